"""``~`` in every path a user gives: data.root, imagefolder's roots, transfer.source,
resume=, ckpt=, inputs=, out=, hydra.run.dir / hydra.sweep.dir, --config-dir, report.

Hydra's override grammar rejects ``~`` in an unquoted value and bash leaves
``data.root=~/x`` alone (a dotted key is no variable name), so users write
``'data.root="~/x"'`` and the ``~`` reaches dlexp; so does ``ckpt='~/x'`` (bash expands
``ckpt=~/x`` itself, zsh and sh do not). HOME points at the test's temp folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import QUICK, read_metrics, run_inprocess

TINY = [*QUICK, "trainer.max_epochs=1", "model=mlp", "data.train_samples=60", "logger=none"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """HOME (a temp folder) holding one finished run at ~/runs/a, trained with
    ``hydra.run.dir="~/runs/a"`` from the working folder ~/work."""
    home = tmp_path_factory.mktemp("home")
    (home / "work").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        code = run_inprocess("train", *TINY, 'hydra.run.dir="~/runs/a"', cwd=home / "work")
    assert code == 0
    return home


@pytest.fixture
def at_home(home, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(home))
    return home


def test_hydra_run_dir_under_home_is_not_a_folder_named_tilde(home):
    assert read_metrics(home / "runs" / "a")["status"] == "completed"
    assert not (home / "work" / "~").exists() and list((home / "work").iterdir()) == []


def test_unquoted_tilde_is_rejected_by_hydra_with_advice_on_quoting(tmp_path, capsys):
    code = run_inprocess("train", "data=mnist", "data.root=~/datasets", cwd=tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: dlexp train: data.root=~/datasets: cannot parse this override")
    assert err.endswith(
        """; Hydra takes ~ only inside a quoted value: write 'data.root="~/datasets"' """
        "(or $HOME instead of ~)"
    )


def test_data_root_with_tilde(tmp_path, monkeypatch):
    from test_datasets import datamodule
    from test_idx_files import fake_idx_set, snapshot

    monkeypatch.setenv("HOME", str(tmp_path))
    fake_idx_set(tmp_path / "datasets")
    before = snapshot(tmp_path / "datasets")
    dm = datamodule("data=mnist", 'data.root="~/datasets"', "data.download=false",
                    "data.val_fraction=0.5")  # fmt: skip
    assert len(dm.test_split) == 10 and snapshot(tmp_path / "datasets") == before
    code = run_inprocess("train", "data=cifar10", "data.root='~/datasets'", "data.download=false",
                         cwd=tmp_path)  # fmt: skip
    assert code == 2  # the message names the expanded folder it looked in


def test_imagefolder_roots_with_tilde(tmp_path, monkeypatch):
    from test_datasets import COLOURS, datamodule, write_pngs

    monkeypatch.setenv("HOME", str(tmp_path))
    write_pngs(tmp_path / "photos" / "train", COLOURS, count=10)
    write_pngs(tmp_path / "photos" / "test", COLOURS, count=4)
    dm = datamodule("data=imagefolder", "data.root='~/photos/train'", "data.image_size=12",
                    "data.test_root='~/photos/test'")  # fmt: skip
    assert dm.class_names == sorted(COLOURS) and len(dm.test_split) == 12


def test_transfer_source_with_tilde(at_home):
    from dlexp.errors import ConfigError
    from dlexp.preflight import check_command_line
    from dlexp.run_config import resolve_checkpoint

    best = at_home / "runs" / "a" / read_metrics(at_home / "runs" / "a")["best_checkpoint"]
    assert resolve_checkpoint("~/runs/a", "transfer.source") == best
    assert resolve_checkpoint(f"~/runs/a/checkpoints/{best.name}", "transfer.source") == best
    check_command_line(["transfer=finetune", 'transfer.source="~/runs/a"'])
    with pytest.raises(ConfigError, match=r"transfer.source=~/nope: no such file or directory"):
        check_command_line(["transfer=finetune", 'transfer.source="~/nope"'])


def test_eval_ckpt_with_tilde(at_home, capsys):
    assert run_inprocess("eval", "ckpt=~/runs/a", cwd=at_home / "work") == 0, capsys.readouterr()
    result = json.loads((at_home / "runs" / "a" / "eval.json").read_text())
    assert result["checkpoint"] == read_metrics(at_home / "runs" / "a")["best_checkpoint"]


def test_predict_ckpt_inputs_and_out_with_tilde(at_home, capsys):
    (at_home / "pngs").mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray(torch.full((32, 32), 40 * i, dtype=torch.uint8).numpy()).save(
            at_home / "pngs" / f"{i}.png"
        )
    code = run_inprocess("predict", "ckpt=~/runs/a", "inputs=~/pngs", "out=~/preds.csv",
                         "topk=2", cwd=at_home / "work")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len((at_home / "preds.csv").read_text().splitlines()) == 3  # header + 2 images
    assert list((at_home / "work").iterdir()) == []


def test_resume_with_tilde(at_home, capsys):
    """A completed run given as resume=~/runs/a is found (and left as it is)."""
    before = (at_home / "runs" / "a" / "metrics.json").read_text()
    code = run_inprocess("train", "resume=~/runs/a", cwd=at_home / "work")
    assert code == 0, capsys.readouterr().err
    assert (at_home / "runs" / "a" / "metrics.json").read_text() == before
    assert not (at_home / "work" / "~").exists()


def test_sweep_dir_and_config_dir_with_tilde(tmp_path, monkeypatch, capsys):
    from dlexp.preflight import check_command_line

    monkeypatch.setenv("HOME", str(tmp_path))
    checked = check_command_line(['hydra.sweep.dir="~/sweeps/${run_id:}"'], multirun=True)
    assert checked.home_dirs == [f"hydra.sweep.dir='{tmp_path}/sweeps/${{run_id:}}'"]
    assert check_command_line([]).home_dirs == []  # outputs/runs/...: left to Hydra
    conf = tmp_path / "userconf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nseed: 1234\n")
    code = run_inprocess("train", "--config-dir=~/userconf", "+experiment=mine", "--cfg", "job",
                         cwd=tmp_path)  # fmt: skip
    assert code == 0 and "seed: 1234" in capsys.readouterr().out


def test_report_with_tilde(at_home, capsys):
    assert run_inprocess("report", "~/runs/a", "--out", "~/report", cwd=at_home / "work") == 0
    assert (at_home / "report" / "report.md").is_file(), capsys.readouterr().err

"""``dlexp eval`` and ``dlexp predict``: checkpoints loaded safely, results reproduced."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from dlexp.data import build_datamodule
from dlexp.run_config import saved_config

from conftest import QUICK, read_metrics, run_inprocess, write_png

# An MLP that memorizes a small training split (~200 digits): 100% training accuracy.
OVERFIT = [
    *QUICK,
    "logger=none",
    "~callbacks.lr_monitor",
    "trainer.num_sanity_val_steps=0",
    "trainer.max_epochs=12",
    "model=mlp",
    "model.hidden_sizes=[256]",
    "optimizer.lr=0.003",
    "data.batch_size=32",
    "data.val_fraction=0.45",
    "data.test_fraction=0.44",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("eval")
    run_dir = tmp / "run"
    assert run_inprocess("train", *OVERFIT, f"hydra.run.dir={run_dir}", cwd=tmp) == 0
    return run_dir


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_eval_reproduces_the_training_runs_test_metrics(run, tmp_path, capsys):
    trained = read_metrics(run)["test"]
    best = run / read_metrics(run)["best_checkpoint"]
    for ckpt in (run, best):  # a run directory stands for its best checkpoint
        (run / "eval.json").unlink(missing_ok=True)
        assert run_inprocess("eval", f"ckpt={ckpt}", cwd=tmp_path) == 0
        result = json.loads((run / "eval.json").read_text())
        assert result["checkpoint"] == str(best.relative_to(run))  # inside the run: relative
        assert set(result["test"]) == set(trained) == {"test/loss", "test/acc", "test/f1"}
        for key, value in trained.items():
            assert abs(result["test"][key] - value) <= 1e-6, (key, result["test"][key], value)
        assert result["data"] == {"name": "digits", "test": 791, "num_classes": 10}
        assert sum(map(sum, result["confusion_matrix"])) == 791
    assert "test/acc" in capsys.readouterr().out


def test_eval_applies_overrides_on_top_of_the_run_config(run, tmp_path, capsys):
    code = run_inprocess("eval", f"ckpt={run}", "data.test_fraction=0.2", "seed=3", cwd=tmp_path)
    assert code == 0, capsys.readouterr().err
    result = json.loads((run / "eval.json").read_text())
    assert result["overrides"] == ["data.test_fraction=0.2", "seed=3"]
    assert result["data"]["test"] == 360
    for overrides, message in (
        (["data.nope=1"], "data.nope=1: unknown key 'data.nope'"),
        (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
        (["optimizer.lr=1"], "dlexp eval cannot change optimizer.lr"),
        (["data.normalize=minmax"], "dlexp eval cannot change data.normalize"),
        (["seed=-1"], "seed=-1: must be a number in"),
        (["data=imagenet"], "data=imagenet: no such option in group 'data'"),
        (["nonsense"], "nonsense: expected key=value"),
    ):
        assert run_inprocess("eval", f"ckpt={run}", *overrides, cwd=tmp_path) == 2
        assert message in one_line_error(capsys)


@pytest.mark.slow
def test_eval_on_another_dataset(run, tmp_path, mnist_root, capsys):
    overrides = ["data=mnist", f"data.root={mnist_root}", "data.image_size=32"]
    code = run_inprocess("eval", f"ckpt={run}", *overrides, cwd=tmp_path)
    assert code == 0, capsys.readouterr().err
    result = json.loads((run / "eval.json").read_text())
    assert result["overrides"] == overrides
    assert result["data"] == {"name": "mnist", "test": 10000, "num_classes": 10}
    assert sum(map(sum, result["confusion_matrix"])) == 10000
    assert result["training_test"] == read_metrics(run)["test"]


def test_eval_reports_a_checkpoint_that_does_not_fit_the_model(run, tmp_path, capsys):
    code = run_inprocess("eval", f"ckpt={run}", "model.hidden_sizes=[64]", cwd=tmp_path)
    assert code == 2
    assert "dlexp eval cannot change model.hidden_sizes" in one_line_error(capsys)
    copy = tmp_path / "copy"  # a run whose config says another architecture than its weights
    shutil.copytree(run, copy)
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("- 256\n", "- 64\n", 1))
    code = run_inprocess("eval", f"ckpt={copy}", cwd=tmp_path)
    line = one_line_error(capsys)
    assert code == 2
    assert "the checkpoint does not fit the model: 3 mismatching keys" in line
    assert "model.backbone.fc1.0.weight (checkpoint [256, 1024], model [64, 1024])" in line


def test_missing_corrupt_and_malicious_checkpoints_are_refused(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Payload()}, copy / "checkpoints" / "evil.ckpt")
    (copy / "checkpoints" / "corrupt.ckpt").write_bytes(b"\x80\x02not a checkpoint")
    cases = {
        "evil.ckpt": "refused: unpickling it would call posix.system",
        "corrupt.ckpt": "refused: not a checkpoint of tensors and plain data",
        "missing.ckpt": "no such file or directory",
    }
    image = tmp_path / "x.png"
    write_png(torch.zeros(1, 32, 32, dtype=torch.uint8), image)
    for name, message in cases.items():
        ckpt = copy / "checkpoints" / name
        assert run_inprocess("eval", f"ckpt={ckpt}", cwd=tmp_path) == 2
        assert message in one_line_error(capsys)
        assert run_inprocess("predict", f"ckpt={ckpt}", f"inputs={image}", cwd=tmp_path) == 2
        assert message in one_line_error(capsys)
    assert not marker.exists()


def training_images(run: Path, folder: Path) -> dict[str, int]:
    """One training image per class, written as PNG: file name -> label."""
    cfg = saved_config(run)
    datamodule = build_datamodule(cfg.data, seed=cfg.seed)
    datamodule.setup("fit")
    split = datamodule.train_split
    folder.mkdir()
    expected = {}
    for label in range(10):
        index = int((split.labels == label).nonzero()[0])
        path = folder / f"train{index:04d}.png"
        write_png(split.images[index], path)
        expected[str(path)] = label
    return expected


def test_predict_returns_the_training_label_of_training_images(run, tmp_path, capsys):
    expected = training_images(run, tmp_path / "images")
    out = tmp_path / "predictions.csv"
    code = run_inprocess(
        "predict",
        f"ckpt={run}",
        f"inputs={tmp_path / 'images'}",
        "topk=3",
        f"out={out}",
        cwd=tmp_path,
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == sorted(expected)
    assert list(rows[0]) == ["file", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    for row in rows:
        assert row["class_1"] == str(expected[row["file"]])
        probs = [float(row[f"prob_{i}"]) for i in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert Path(row["file"]).name in printed
    assert f"wrote {out}" in printed


def test_predict_rejects_bad_arguments(run, tmp_path, capsys):
    image = tmp_path / "x.png"
    write_png(torch.zeros(1, 32, 32, dtype=torch.uint8), image)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = {
        ("inputs=" + str(image), "top=3"): "top=3: unknown argument",
        ("inputs=" + str(image), "topk=0"): "topk=0: must be an integer >= 1",
        ("inputs=" + str(tmp_path / "empty"),): "no images in this folder",
        ("inputs=" + str(tmp_path / "broken.png"),): "broken.png: not a readable image",
        (): "inputs: required",
    }
    for args, message in cases.items():
        assert run_inprocess("predict", f"ckpt={run}", *args, cwd=tmp_path) == 2
        assert message in one_line_error(capsys)

"""Training and predict edge cases end as the user expects: BatchNorm with a last batch of one
sample trains, one class or a non-finite learning rate is refused up front, unwritable places
are found before the work, and every CSV dlexp writes reads back with the csv module."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_config import probe

from dlexp.data.memory import MemoryBatches
from dlexp.errors import ConfigError

from conftest import (
    QUICK,
    UNPRIVILEGED,
    compose_config,
    read_epochs,
    read_metrics,
    run_cli,
    run_inprocess,
    write_png,
)

TINY = [*QUICK, "logger=none", "~callbacks.lr_monitor", "trainer.num_sanity_val_steps=0"]
QUOTED = ["a,b", 'say "hi"', "two\nlines"]  # class folder names that need CSV quoting


def image_folder(root: Path, names: list[str], per_class: int = 6) -> Path:
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            value = 40 + 80 * label + i
            write_png(torch.full((1, 8, 8), value, dtype=torch.uint8), root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def quoted_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch imagefolder run whose class names need quoting, and its image folder."""
    tmp = tmp_path_factory.mktemp("edge")
    root = image_folder(tmp / "photos", QUOTED)
    run_dir = tmp / "run"
    code = run_inprocess("train", *TINY, "trainer.max_epochs=1", "data=imagefolder",
                         f"data.root={root}", "data.image_size=8", "data.channels=1",
                         "model=mlp", "model.hidden_sizes=[8]", f"hydra.run.dir={run_dir}",
                         cwd=tmp)  # fmt: skip
    assert code == 0
    return run_dir, root


# -- BatchNorm and a last training batch of one sample ----------------------------------------


@pytest.mark.parametrize("loader", ["memory", "dataloader"])
def test_batchnorm_trains_when_the_last_batch_would_hold_one_sample(loader, tmp_path, capsys):
    # 21 training samples in batches of 4: 5 x 4 + 1 ("Expected more than 1 value per channel")
    run_dir = tmp_path / "run"
    code = run_inprocess("train", *TINY, "trainer.max_epochs=2", "model.norm=batch",
                         "data.batch_size=4", "data.train_samples=21", f"data.loader={loader}",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert read_metrics(run_dir)["status"] == "completed"
    assert read_metrics(run_dir)["data"]["train"] == 21
    assert len(read_epochs(run_dir)) == 2  # the OneCycle schedule counted the steps it got


def test_memory_batches_drop_only_a_last_training_batch_of_one():
    images, labels = torch.zeros(9, 1, 2, 2), torch.arange(9)
    for batch, shuffle, sizes in ((4, True, [4, 4]), (4, False, [4, 4, 1]), (3, True, [3] * 3),
                                  (5, True, [5, 4]), (8, True, [8])):  # fmt: skip
        batches = MemoryBatches(images, labels, batch, shuffle=shuffle)
        assert [len(b[1]) for b in batches] == sizes and len(batches) == len(sizes)
    single = MemoryBatches(images[:1], labels[:1], 4, shuffle=True)
    assert [len(b[1]) for b in single] == [1]  # nothing else to train on: kept


# -- refused up front -----------------------------------------------------------------------


def test_an_image_folder_with_one_class_is_refused_up_front_without_torch(tmp_path):
    root = image_folder(tmp_path / "photos", ["cat"])
    (root / ".thumbnails").mkdir()  # hidden: no class
    (root / "dog").symlink_to(root / "cat")  # a link to a folder: no class
    code, heavy, err = probe(tmp_path, "train", "data=imagefolder", f"data.root={root}")
    assert (code, heavy) == (2, []), err
    assert f"data.root={root}: has one class folder (cat)" in err and err.count("error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing created
    image_folder(tmp_path / "test", ["cat", "dog"])
    (root / "dog").unlink()
    image_folder(root, ["emu"])
    code, heavy, err = probe(tmp_path, "train", "data=imagefolder", f"data.root={root}",
                             f"data.test_root={tmp_path / 'test'}")  # fmt: skip
    assert (code, heavy) == (2, []) and "must have the class folders of data.root (cat, emu)" in err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "+inf", "1e999"])
def test_a_non_finite_learning_rate_is_refused_like_nan(value):
    with pytest.raises(ConfigError, match=rf"optimizer\.lr={value.lstrip('+')}|optimizer\.lr="):
        compose_config(f"optimizer.lr={value}")


def test_lr_inf_is_one_line_exit_2_without_torch(tmp_path):
    code, heavy, err = probe(tmp_path, "train", "optimizer.lr=inf")
    assert (code, heavy) == (2, []) and "optimizer.lr=inf: must be" in err, err


# -- unwritable places, found before the work -----------------------------------------------


def test_a_read_only_checkpoints_folder_is_found_before_training(tmp_path):
    """An interrupted run (epoch 1 of 2) whose checkpoints/ became read-only: resume refuses
    it up front and leaves the record as it was (training would fail after an epoch)."""
    run_dir = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("trainer.max_epochs")]
    code = run_inprocess("train", *args, "trainer.max_epochs=1", "model=mlp", "scheduler=none",
                         "data.train_samples=64", f"hydra.run.dir={run_dir}",
                         cwd=tmp_path)  # fmt: skip
    assert code == 0
    for name in (".hydra/overrides.yaml", "config.yaml"):  # as if stopped after epoch 1 of 2
        path = run_dir / name
        text = path.read_text()
        path.write_text(
            text.replace("max_epochs=1", "max_epochs=2").replace("max_epochs: 1", "max_epochs: 2")
        )
    record = read_metrics(run_dir) | {"status": "interrupted"}
    (run_dir / "metrics.json").write_text(json.dumps(record))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    (run_dir / "checkpoints").chmod(0o555)
    try:
        done = run_cli("train", f"resume={run_dir}", cwd=tmp_path, prefix=UNPRIVILEGED)
    finally:
        (run_dir / "checkpoints").chmod(0o755)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and f"cannot write into {run_dir / 'checkpoints'}" in err[0], err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_read_only_parent_of_the_run_dir_is_found_before_training(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    done = run_cli("train", *TINY, f"hydra.run.dir={parent / 'run'}", cwd=tmp_path,
                   prefix=UNPRIVILEGED)  # fmt: skip
    assert done.returncode == 2 and "cannot write there" in done.stderr, done.stderr
    assert list(parent.iterdir()) == []


def test_predict_out_must_be_a_writable_file_path(quoted_run, tmp_path, capsys):
    run_dir, root = quoted_run
    image = root / "a,b" / "0.png"
    assert run_inprocess("predict", f"ckpt={run_dir}", f"inputs={image}", f"out={tmp_path}",
                         cwd=tmp_path) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"out={tmp_path}: is a folder" in err[0], err
    locked = tmp_path / "run"
    shutil.copytree(run_dir, locked)
    locked.chmod(0o555)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    try:
        for out, shown in (([], f"{locked}/predictions.csv (the default out)"),
                           ([f"out={ro}/p.csv"], f"out={ro}/p.csv")):  # fmt: skip
            done = run_cli("predict", f"ckpt={locked}", f"inputs={image}", *out, cwd=tmp_path,
                           prefix=UNPRIVILEGED)  # fmt: skip
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert f"{shown}: cannot be written" in lines[0]
        assert not (locked / "predictions.csv").exists() and list(ro.iterdir()) == []
    finally:
        locked.chmod(0o755)


# -- CSV files quote what needs quoting -----------------------------------------------------


def test_every_csv_reads_back_class_names_that_need_quoting(quoted_run, tmp_path, capsys):
    run_dir, root = quoted_run
    assert read_metrics(run_dir)["data"]["class_names"] == sorted(QUOTED)
    with open(run_dir / "confusion_matrix.csv", newline="") as f:
        matrix = list(csv.reader(f))
    assert matrix[0] == ["true\\pred", *sorted(QUOTED)]
    assert [row[0] for row in matrix[1:]] == sorted(QUOTED)
    assert all(len(row) == len(QUOTED) + 1 for row in matrix)
    out = tmp_path / "p.csv"
    code = run_inprocess("predict", f"ckpt={run_dir}", f"inputs={root}", "topk=3", f"out={out}",
                         cwd=tmp_path)  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * len(QUOTED)
    assert {Path(r["file"]).parent.name for r in rows} == set(QUOTED)
    assert all({r["class_1"], r["class_2"], r["class_3"]} == set(QUOTED) for r in rows)
    # summary.csv of a report over two runs whose varying override needs quoting too
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    record = read_metrics(other)
    record["overrides"] = [
        o if not o.startswith("data.root=") else 'data.root=/x/a,"b"\nc'
        for o in record["overrides"]
    ]
    (other / "metrics.json").write_text(json.dumps(record))
    assert run_inprocess("report", str(run_dir), str(other), "--out", str(tmp_path / "rep"),
                         cwd=tmp_path) == 0  # fmt: skip
    with open(tmp_path / "rep" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["data.root"] for r in summary] == [str(root), '/x/a,"b"\nc']

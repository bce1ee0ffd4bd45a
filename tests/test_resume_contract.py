"""Resume has a contract (overrides honoured exactly or refused up front) and a run
directory is portable (a copy evaluates, predicts, resumes and transfers from its own files)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import read_epochs, read_metrics, run_inprocess, write_png

TINY = [
    "model=mlp",
    "model.hidden_sizes=[16]",
    "data.train_samples=96",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "logger=none",
]


def files(root) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def interrupted_after(tmp_path, name: str, epochs: int, total: int, *extra: str):
    """A run of ``total`` epochs that stopped after ``epochs`` as an interrupted one does."""
    run = tmp_path / name
    args = [*TINY, f"trainer.max_epochs={epochs}", *extra, f"hydra.run.dir={run}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    record = read_metrics(run)
    record.update(status="interrupted", last_completed_epoch=epochs)
    (run / "metrics.json").write_text(json.dumps(record))
    overrides = run / ".hydra" / "overrides.yaml"  # as if started for `total` epochs
    overrides.write_text(overrides.read_text() + f"- trainer.max_epochs={total}\n")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(f"max_epochs: {epochs}", f"max_epochs: {total}"))
    return run


@pytest.fixture(scope="module")
def completed(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    run = root / "done"
    assert run_inprocess("train", *TINY, f"hydra.run.dir={run}", cwd=root) == 0
    return run


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=0.5",
        "model=lenet5",
        "model.hidden_sizes=[32]",
        "seed=7",
        "scheduler=cosine",
        "data.batch_size=8",
        "trainer.precision=bf16-mixed",
        "+callbacks.early_stopping._target_=pytorch_lightning.callbacks.EarlyStopping",
        "semi=pseudo_label",
    ],
)
def test_a_change_resume_cannot_honour_is_refused_before_anything_is_written(
    completed, tmp_path, capsys, override
):
    before = files(completed)
    capsys.readouterr()
    assert run_inprocess("train", f"resume={completed}", override, cwd=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "a resume cannot change" in err[0] or "unknown key" in err[0], err
    if "a resume cannot change" in err[0]:
        assert "it may change: trainer.max_epochs" in err[0], err
    assert files(completed) == before  # .hydra/ included: Hydra never ran


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=1", "must be >= 2"),
        ("trainer.accelerator=auto", "the run is completed"),
        ("trainer.max_epochs=2", None),  # no change: kept as it is, exit 0
    ],
)
def test_a_completed_run_takes_only_more_epochs(completed, tmp_path, capsys, override, expected):
    before = files(completed)
    capsys.readouterr()
    code = run_inprocess("train", f"resume={completed}", override, cwd=tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    if expected is None:
        assert code == 0
    else:
        assert code == 2 and len(err) == 1 and expected in err[0], err
    kept = ("metrics.json", "config.yaml", "epochs.csv", "checkpoints")  # Hydra logs aside
    assert {
        p: b for p, b in files(completed).items() if p.relative_to(completed).parts[0] in kept
    } == {p: b for p, b in before.items() if p.relative_to(completed).parts[0] in kept}


@pytest.mark.parametrize("scheduler", ["onecycle_fast", "cosine"])
def test_more_epochs_on_resume_rebuild_the_schedule_for_the_new_length(tmp_path, scheduler):
    """An interrupted 3-epoch run resumed for 4 epochs trains its last epochs at the rates of
    an uninterrupted 4-epoch run (seen: OneCycle sized for 3 epochs fails after training)."""
    extra = (f"scheduler={scheduler}", "scheduler.warmup_epochs=0.5")[: 1 + (scheduler == "cosine")]
    fresh = tmp_path / "fresh"
    args = [*TINY, "trainer.max_epochs=4", *extra, f"hydra.run.dir={fresh}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    run = interrupted_after(tmp_path, "cut", 2, 3, *extra)
    assert run_inprocess("train", f"resume={run}", "trainer.max_epochs=4", cwd=tmp_path) == 0
    record = read_metrics(run)
    assert record["status"] == "completed" and record["epochs"] == 4
    assert record["resumes"] == [{"at_epoch": 2, "changed": {"trainer.max_epochs": [3, 4]}}]
    assert [r["lr"] for r in read_epochs(run)][2:] == [r["lr"] for r in read_epochs(fresh)][2:]
    assert "max_epochs: 4" in (run / "config.yaml").read_text()


def test_a_completed_run_continues_for_more_epochs(completed, tmp_path):
    run = tmp_path / "more"
    shutil.copytree(completed, run)
    assert run_inprocess("train", f"resume={run}", "trainer.max_epochs=3", cwd=tmp_path) == 0
    record = read_metrics(run)
    assert record["status"] == "completed" and record["epochs"] == 3 and record["resumed"] == 1
    assert record["resumes"][-1] == {"at_epoch": 2, "changed": {"trainer.max_epochs": [2, 3]}}
    assert [r["epoch"] for r in read_epochs(run)] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("metrics.json", "[1, 2]", "not a dlexp run record"),
        ("metrics.json", '{"status": 3}', "not a dlexp run record"),
        ("metrics.json", '{"status": "interrupted", "resumed": "x"}', "resumed"),
        ("metrics.json", "{", "corrupt metrics.json"),
        ("epochs.csv", "epoch,val/acc\n1,abc\n", "malformed epochs.csv"),
        ("epochs.csv", "epoch,val/acc\n1,0.5,9\n", "malformed epochs.csv"),
        ("epochs.csv", "nothing\n", "malformed epochs.csv"),
        (".hydra/overrides.yaml", "a: [", "unreadable"),
        (".hydra/overrides.yaml", "{a: 1}", "not Hydra's list"),
    ],
)
def test_resume_of_a_malformed_run_dir_is_one_line_exit_2(
    completed, tmp_path, capsys, name, content, expected
):
    run = tmp_path / "bad"
    shutil.copytree(completed, run)
    record = read_metrics(run)
    (run / "metrics.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (run / name).write_text(content)
    before = files(run)
    capsys.readouterr()
    assert run_inprocess("train", f"resume={run}", cwd=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert files(run) == before


def test_a_moved_run_dir_evaluates_predicts_resumes_and_transfers_from_its_own_files(tmp_path):
    original = tmp_path / "A"
    args = [*TINY, "seed=1", f"hydra.run.dir={original}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    moved = tmp_path / "moved" / "B"
    shutil.move(original, moved)
    # a different run now lives where the moved one was trained
    args = [*TINY, "seed=2", "model.hidden_sizes=[8]", f"hydra.run.dir={original}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    # (train.log aside: in this one process the logging Hydra set up for the last run keeps
    # its file open and takes the next commands' lines; a dlexp process logs its own run only)
    other = {p: b for p, b in files(original).items() if p.name != "train.log"}
    record = read_metrics(moved)
    assert record["best_checkpoint"].startswith("checkpoints/") and "run_dir" not in record
    assert str(tmp_path) not in (moved / "config.yaml").read_text()

    assert run_inprocess("eval", f"ckpt={moved}", cwd=tmp_path) == 0
    result = json.loads((moved / "eval.json").read_text())
    assert result["checkpoint"] == record["best_checkpoint"]
    assert result["test"] == pytest.approx(record["test"], abs=1e-6)

    import torch

    write_png(torch.zeros(1, 8, 8, dtype=torch.uint8), tmp_path / "img.png")
    inputs = f"inputs={tmp_path / 'img.png'}"
    assert run_inprocess("predict", f"ckpt={moved}", inputs, cwd=tmp_path) == 0
    assert (moved / "predictions.csv").is_file()

    child = tmp_path / "C"
    transfer = ["transfer=finetune", f"transfer.source={moved}", f"hydra.run.dir={child}"]
    assert run_inprocess("train", *TINY, *transfer, cwd=tmp_path) == 0
    loaded = read_metrics(child)["transfer"]
    assert loaded["tensors_loaded"] and loaded["source"].startswith(str(moved)), loaded

    assert run_inprocess("train", f"resume={moved}", "trainer.max_epochs=3", cwd=tmp_path) == 0
    resumed = read_metrics(moved)
    assert resumed["status"] == "completed" and resumed["epochs"] == 3
    assert (moved / resumed["best_checkpoint"]).is_file()
    after = {p: b for p, b in files(original).items() if p.name != "train.log"}
    assert after == other  # nothing read from or written to the original place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "C", "img.png", "moved"]

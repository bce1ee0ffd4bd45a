"""What a run prints: dlexp's lines, epochs counted from 1, Lightning's routine lines on demand."""

from __future__ import annotations

import re

import pytest

from conftest import read_epochs, read_metrics, run_cli

SHORT = [
    "model=mlp",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.accelerator=cpu",
]
LIGHTNING_ROUTINE = (
    "GPU available",
    "TPU available",
    "Loading `train_dataloader` to estimate",
    "`Trainer.fit` stopped",
    "Restoring states from the checkpoint",
    "LeafSpec",
)
LIGHTNING_SUMMARY = ("Modules in train mode", "FLOPs", "train_metrics", "BatchMean")


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("quiet")
    result = run_cli("train", *SHORT, "hydra.run.dir=run", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning: 4 batches < log_every_n_steps is not one
    return cwd / "run", result.stdout


def test_the_console_has_no_lightning_routine_lines_and_train_log_keeps_them(quiet_run):
    run, console = quiet_run
    for line in (*LIGHTNING_ROUTINE, *LIGHTNING_SUMMARY):
        assert line not in console
    assert "[pytorch_lightning" not in console and "][INFO]" not in console
    log = (run / "train.log").read_text()
    assert "GPU available" in log and "Loading `train_dataloader`" in log


def test_epochs_count_from_one_in_the_bar_the_checkpoints_and_the_records(quiet_run):
    run, console = quiet_run
    assert re.search(r"Epoch 2/2\s", console) and "Epoch 0" not in console
    record = read_metrics(run)
    assert [int(row["epoch"]) for row in read_epochs(run)] == [1, 2]
    best = record["best_epoch"]
    assert record["best_checkpoint"] == f"checkpoints/epoch{best:03d}.ckpt"
    assert (run / record["best_checkpoint"]).is_file()


def test_a_run_ends_with_its_best_epoch_test_metrics_dir_and_next_commands(quiet_run):
    run, console = quiet_run
    record = read_metrics(run)
    lines = console.strip().splitlines()[-4:]
    metric = record["monitor"]["metric"]
    best = f"{record['best'][metric]:.4f}"
    assert lines[0] == "run completed: run"
    assert lines[1].strip() == f"best {metric} {best} at epoch {record['best_epoch']} of 2"
    acc = f"{record['test']['test/acc']:.4f}"
    assert lines[2].strip().startswith("test: ") and f"acc {acc}" in lines[2]
    assert lines[3].strip() == "next: make tensorboard | dlexp report run | dlexp eval ckpt=run"
    table = console[: console.index("Epoch 2/2")]
    assert "params" in table and "trainable" in table  # the model's layers, before training


def test_verbose_brings_lightnings_lines_and_summary_back(tmp_path):
    result = run_cli("train", *SHORT, "verbose=true", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    assert "GPU available" in console and "Modules in train mode" in console


def test_eval_prints_no_lightning_routine_lines_either(quiet_run):
    run, _ = quiet_run
    result = run_cli("eval", f"ckpt={run}", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    for line in LIGHTNING_ROUTINE:
        assert line not in console
    assert "test/acc" in console.splitlines()[-1]

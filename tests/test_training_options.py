"""The new training options together, end to end through the command line."""

from __future__ import annotations

import pytest

from conftest import QUICK, only_run_dir, read_epochs, read_metrics, run_inprocess


def test_schedule_augmentation_penalty_and_smoothing_in_one_run(tmp_path):
    code = run_inprocess(
        "train", *QUICK, "data.train_samples=200", "augment=strong", "scheduler=step",
        "scheduler.step_size=1", "scheduler.gamma=0.5", "regularization.l2=1",
        "loss.label_smoothing=0.1", "model.dropout=true", "trainer.gradient_clip_val=1.0",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    run = only_run_dir(tmp_path)
    metrics = read_metrics(run)
    assert metrics["status"] == "completed" and metrics["data"]["train"] == 200
    assert metrics["stopped"]["by"] == "max_epochs"
    rows = read_epochs(run)
    # the learning rate of every epoch: 1e-3, then halved by StepLR after epoch 1
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 5e-4])
    assert all(float(r["train/penalty"]) > 0 for r in rows)
    assert 0 <= float(rows[-1]["train/acc"]) <= 1 and float(rows[-1]["val/loss"]) > 0
    assert "dropout: true" in (run / "config.yaml").read_text()

"""Early stopping stops `patience` epochs after the last improvement; metrics.json says so."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlexp.callbacks import stop_record
from dlexp.config import register_configs
from dlexp.preflight import check_command_line

from conftest import QUICK, only_run_dir, read_epochs, read_metrics, run_inprocess


class ScriptedMetric(pl.LightningModule):
    """Trains a dummy parameter; logs ``val/score`` = ``values[epoch]`` after each validation."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.weight = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - batch[0].mean()).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        self.log("val/score", self.values[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def early_stopping(*overrides: str) -> EarlyStopping:
    """The ``callbacks.early_stopping`` entry of ``callbacks=early_stopping overrides``."""
    register_configs()
    cfg = check_command_line(["callbacks=early_stopping", *overrides]).configs[0]
    assert set(cfg.callbacks) == {
        "model_checkpoint",
        "last_checkpoint",
        "lr_monitor",
        "early_stopping",
    }
    return instantiate(cfg.callbacks["early_stopping"])


def run(values: list[float], callback: EarlyStopping, tmp_path) -> pl.Trainer:
    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=len(values), callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(ScriptedMetric(values), data, data)
    return trainer


@pytest.mark.parametrize(("patience", "last_improvement"), [(1, 2), (2, 4), (3, 4), (5, 4)])
def test_stops_exactly_patience_epochs_after_the_last_improvement(
    patience, last_improvement, tmp_path
):
    # improvements at epochs 1, 2, 4 (1-based), never again; with patience 1 the worse
    # epoch 3 already ends the run, with more patience epoch 4 resets the count.
    values = [5.0, 4.0, 4.5, 3.0, 3.0, 3.5, 3.2, 3.1, 3.05, 3.01, 3.0, 3.0]
    callback = early_stopping("callbacks.early_stopping.monitor=val/score",
                              f"callbacks.early_stopping.patience={patience}")  # fmt: skip
    trainer = run(values, callback, tmp_path)
    assert trainer.current_epoch == last_improvement + patience  # epochs that ran
    record = stop_record(trainer, [callback])
    assert record["by"] == "early_stopping" and record["epoch"] == last_improvement + patience
    assert f"did not improve in the last {patience} records" in record["reason"]


def test_min_delta_and_mode_max(tmp_path):
    # mode max: +0.05 is not an improvement with min_delta 0.1; +0.2 at epoch 3 is
    values = [0.5, 0.55, 0.7, 0.75, 0.79, 0.8, 0.9, 0.9]
    callback = early_stopping("callbacks.early_stopping.monitor=val/score",
                              "callbacks.early_stopping.mode=max",
                              "callbacks.early_stopping.min_delta=0.1",
                              "callbacks.early_stopping.patience=3")  # fmt: skip
    trainer = run(values, callback, tmp_path)
    assert stop_record(trainer, [callback])["epoch"] == 6


def test_a_run_that_is_not_stopped_early_says_it_reached_max_epochs(tmp_path):
    callback = early_stopping("callbacks.early_stopping.monitor=val/score")
    trainer = run([3.0, 2.0, 1.0], callback, tmp_path)
    assert stop_record(trainer, [callback]) == {
        "by": "max_epochs", "epoch": 3, "reason": "reached trainer.max_epochs=3"
    }  # fmt: skip


def test_metrics_json_records_when_and_why_a_run_stopped(tmp_path):
    # train/loss can never improve by 100: the run stops `patience` epochs after epoch 1.
    code = run_inprocess(
        "train", *QUICK, "trainer.max_epochs=6", "callbacks=early_stopping",
        "callbacks.early_stopping.monitor=train/loss", "callbacks.early_stopping.min_delta=100",
        "callbacks.early_stopping.patience=2", "data.train_samples=200", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    run_dir = only_run_dir(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    assert metrics["stopped"]["by"] == "early_stopping" and metrics["stopped"]["epoch"] == 3
    assert "train/loss" in metrics["stopped"]["reason"]
    assert [int(r["epoch"]) for r in read_epochs(run_dir)] == [1, 2, 3]


def test_a_non_finite_metric_stops_at_once_and_says_why(tmp_path):
    callback = early_stopping("callbacks.early_stopping.monitor=val/score")
    trainer = run([float("nan"), 1.0, 0.5], callback, tmp_path)
    record = stop_record(trainer, [callback])
    assert record["by"] == "early_stopping" and record["epoch"] == 1
    assert "not finite" in record["reason"]

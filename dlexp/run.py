"""``dlexp train``: one run, from a composed config to ``metrics.json``.

Read top to bottom, this is the whole training path: seed, data, model, LightningModule,
callbacks and loggers, Trainer, fit, test on the best checkpoint, record.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from dlexp.callbacks import (
    ConfusionMatrixReport,
    EpochHistory,
    build_callbacks,
    find_checkpoint_callback,
)
from dlexp.config import to_yaml
from dlexp.data import build_datamodule
from dlexp.errors import TrainingError
from dlexp.io import atomic_write_text
from dlexp.loggers import build_loggers
from dlexp.models import build_model
from dlexp.module import ClassificationModule
from dlexp.record import RunRecord
from dlexp.trainer import build_trainer
from dlexp.transfer import prepare_transfer

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Train and test one configuration in ``run_dir``; return the ``metrics.json`` record.

    Bad input found while building (missing data, impossible model) raises before anything
    is written; a failure once training started is recorded as ``status: failed``.
    """
    record = RunRecord(run_dir, overrides, started=time.time())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build_datamodule(cfg.data, seed=cfg.seed)
    datamodule.setup("fit")
    model = build_model(
        cfg.model,
        in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes,
        image_size=datamodule.image_size,
    )
    transfer = prepare_transfer(cfg.get("transfer"), model, cfg.model)
    module = ClassificationModule(
        model,
        datamodule.normalizer,
        datamodule.num_classes,
        transfer.optimizer(instantiate(cfg.optimizer)),
    )
    history = EpochHistory(run_dir / "epochs.csv")
    callbacks = build_callbacks(cfg.callbacks, run_dir)
    callbacks += [history, ConfusionMatrixReport(run_dir, datamodule.class_names)]
    callbacks += transfer.callbacks
    trainer = build_trainer(
        cfg.trainer,
        callbacks=callbacks,
        loggers=build_loggers(cfg.logger, run_dir),
        run_dir=run_dir,
    )

    atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    record.save(
        status="running",
        num_params=sum(p.numel() for p in model.parameters()),
        data={
            "train": len(datamodule.train_split),
            "val": len(datamodule.val_split),
            "test": len(datamodule.test_split),
            "num_classes": datamodule.num_classes,
            "image_size": datamodule.image_size,
            "in_channels": datamodule.in_channels,
            "class_names": datamodule.class_names,
        },
        transfer=transfer.record,
    )
    try:
        trainer.fit(module, datamodule=datamodule)
        checkpoint = find_checkpoint_callback(callbacks)
        best_path = checkpoint.best_model_path if checkpoint else ""
        tested = trainer.test(
            module,
            datamodule=datamodule,
            ckpt_path=best_path or None,
            verbose=False,
            weights_only=True,
        )
    except Exception as exc:
        log.debug("training failed", exc_info=True)
        record.save(status="failed", error=f"{type(exc).__name__}: {exc}", epochs=len(history.rows))
        raise TrainingError(f"training failed: {type(exc).__name__}: {exc}") from exc

    monitor, mode = (checkpoint.monitor, checkpoint.mode) if checkpoint else ("val/loss", "min")
    best = history.best(monitor, mode) or {}
    return record.save(
        status="completed",
        epochs=len(history.rows),
        best_epoch=best.get("epoch"),
        monitor={"metric": monitor, "mode": mode},
        best={k: v for k, v in best.items() if k.startswith("val/")},
        test={k: round(float(v), 6) for k, v in (tested[0] if tested else {}).items()},
        best_checkpoint=best_path,
    )

"""Loggers (``conf/logger/*.yaml``) and what dlexp reports to them beyond Lightning's scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from dlexp.config import Config, flat_config
from dlexp.config.logger import documented


def build_loggers(
    cfg: dict[str, Any] | None, run_dir: Path, resume_step: int | None = None
) -> list[Logger]:
    """Build every entry of the ``logger`` group, writing under ``run_dir``.

    The documented loggers build themselves (:mod:`dlexp.config.logger`; a resumed run's
    TensorBoard purges the steps from ``resume_step`` on); other entries are instantiated from
    their ``_target_`` with ``save_dir=run_dir``.
    """
    loggers = []
    for node in (cfg or {}).values():
        if documented(node):
            loggers.append(node.build(run_dir, resume_step))
        elif node:
            loggers.append(instantiate(node, save_dir=str(run_dir)))
    return loggers


@rank_zero_only
def log_run_config(loggers: list[Logger], cfg: Config) -> None:
    """The flattened config as the hyperparameters of the trackers' runs (MLflow, W&B), as
    the run starts (TensorBoard's come with the final metrics: :func:`log_final_hparams`).

    A resumed MLflow run keeps the params it started with and gets only new keys (MLflow
    refuses changed values; ``metrics.json`` lists what a resume changed)."""
    params = flat_hparams(cfg)
    for logger in loggers:
        if isinstance(logger, (TensorBoardLogger, CSVLogger)):
            continue
        if isinstance(logger, MLFlowLogger):
            logged = logger.experiment.get_run(logger.run_id).data.params
            logger.log_hyperparams({k: v for k, v in params.items() if k not in logged})
        else:
            logger.log_hyperparams(params)


def _tensorboards(loggers) -> list[TensorBoardLogger]:
    return [lg for lg in loggers if isinstance(lg, TensorBoardLogger)]


class SampleImages(pl.Callback):
    """Logs a grid of the first training batch as the model receives it (after augmentation)."""

    def __init__(self, count: int = 64) -> None:
        self.count = count
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.done or not trainer.is_global_zero:
            return
        self.done = True
        from torchvision.utils import make_grid

        images = batch[0][: self.count].detach().cpu()
        images = images.float() / 255 if images.dtype == torch.uint8 else images
        grid = make_grid(images, nrow=8, pad_value=1.0)  # pixels in [0, 1], shown as they are
        for logger in _tensorboards(trainer.loggers):
            logger.experiment.add_image("train/samples", grid, global_step=0)


def flat_hparams(cfg: Config) -> dict[str, Any]:
    """The config as ``{"model.dropout": 0.2, …}`` with scalar values (lists as text)."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in flat_config(cfg).items()
        if not key.startswith(("callbacks", "logger"))
    }


def log_final_hparams(loggers, cfg: Config, record: dict[str, Any]) -> None:
    """Fill TensorBoard's HParams dashboard: this run's hyperparameters with its final metrics.

    The metrics are written as ``hp/*`` scalars (best val metrics, test metrics, epochs), which
    the dashboard shows beside each run's hyperparameters.
    """
    metrics = {f"hp/best_{k.replace('/', '_')}": v for k, v in record.get("best", {}).items()}
    metrics.update({f"hp/{k.replace('/', '_')}": v for k, v in record.get("test", {}).items()})
    metrics["hp/epochs"] = record.get("epochs", 0)
    for logger in _tensorboards(loggers):
        logger.log_hyperparams(flat_hparams(cfg), metrics)
        logger.experiment.flush()

"""What a run's architecture costs, for ``metrics.json`` and the report's architecture chart:
multiply-accumulates per image (as ``dlexp models`` counts them) and training images/s."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn


class TrainingThroughput(pl.Callback):
    """Images trained on and seconds spent training: the training epochs less the validation
    inside them (the sanity check and the test are outside any epoch). Under DDP the images
    of every rank are counted (each rank's batches times the world size)."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._since: float | None = None  # when the training now timed started
        self._world_size = 1

    def _pause(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._world_size = trainer.world_size  # (read once, not at every step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[0]) * self._world_size

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._since = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause()

    def record(self) -> dict[str, Any]:
        """``{"train_images", "train_seconds", "images_per_s"}`` of this process's training."""
        rate = self.images / self.seconds if self.seconds > 0 else None
        return {
            "train_images": self.images,
            "train_seconds": round(self.seconds, 6),
            "images_per_s": None if rate is None else round(rate, 1),
        }


def macs_per_image(model_cfg, datamodule) -> int:
    """Multiply-accumulates of one image of ``datamodule`` through the configured model,
    counted as ``dlexp models`` counts them (built on the meta device: no memory, ~0.1 s)."""
    from dlexp.config.data import DataShape
    from dlexp.models.table import count

    shape = DataShape(datamodule.in_channels, datamodule.image_size, datamodule.num_classes)
    return count(model_cfg, shape)[1]

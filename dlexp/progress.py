"""The console during training: a progress bar that costs nothing per step, a layer table.

* :class:`ProgressBar`: Lightning's rich bar, redrawn once a second (Lightning's redraws and
  reads the metrics at every batch, about 2 ms a step on a CPU; rich's drawing thread, four
  times a second, took ~7 % of a LeNet-5 step's time on 2 cores), with epochs counted from 1
  as in ``epochs.csv`` and ``metrics.json``.
* :class:`LayerSummary`: the model's layers and parameter counts, in place of Lightning's
  summary of every submodule of the LightningModule (metrics and losses included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from dlexp.compat.lightning import DescribedRichProgressBar
from dlexp.models.table import si_count


class ProgressBar(DescribedRichProgressBar):
    """A rich progress bar that redraws (and reads the progress-bar metrics) only every
    ``1 / refresh_per_second`` seconds and at the last batch of each loop."""

    def __init__(self, refresh_per_second: float = 1.0) -> None:
        super().__init__(refresh_rate=max(1, round(refresh_per_second)))
        self.interval = 1.0 / refresh_per_second
        self._drawn = 0.0

    def epoch_description(self, epoch: int) -> str:
        text = f"Epoch {epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"

    def _due(self, batch_idx: int, total: Callable[[], Any]) -> bool:
        """Whether to draw now: the interval has passed, or this is the loop's first or last
        batch (rich estimates the speed from two draws at least)."""
        if self.is_disabled:  # e.g. DDP ranks above 0: Lightning keeps no loop state for them
            return False
        now = time.monotonic()
        if now - self._drawn >= self.interval or batch_idx == 0 or batch_idx + 1 == total():
            self._drawn = now
            return True
        return False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._due(batch_idx, lambda: self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        def total() -> Any:
            if trainer.sanity_checking:
                return trainer.num_sanity_val_batches[dataloader_idx]
            return self.total_val_batches_current_dataloader

        if self._due(batch_idx, total):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._due(batch_idx, lambda: self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._due(batch_idx, lambda: self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )


class LayerSummary(pl.Callback):
    """At the start of training, a table of ``pl_module.model``'s top-level layers:
    type, parameters, trainable parameters; then the totals in one line."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from rich.console import Console
        from rich.table import Table

        model = pl_module.model
        table = Table()
        for name, justify in (("layer", "left"), ("type", "left"), ("params", "right")):
            table.add_column(name, justify=justify)
        table.add_column("trainable", justify="right")
        for name, layer in model.named_children():
            params = list(layer.parameters())
            if not params and not any(True for _ in layer.children()) and not layer.extra_repr():
                continue  # an empty container (e.g. no auxiliary heads)
            total = sum(p.numel() for p in params)
            trainable = sum(p.numel() for p in params if p.requires_grad)
            table.add_row(name, type(layer).__name__, si_count(total), si_count(trainable))
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        console = Console()
        console.print(table)
        console.print(
            f"{si_count(total)} parameters ({si_count(trainable)} trainable), "
            f"{total * 4 / 1e6:.2f} MB in float32"
        )

"""A callback that checks the training steps for host-device synchronizations on a GPU.

Add it to a run with ``+callbacks.sync_debug._target_=dlexp.cuda_sync.SyncDebugMode``
(``+callbacks.sync_debug.mode=warn`` to warn instead of raising): every optimizer step
(forward, backward and update: what Lightning's ``optimizer_step`` runs) executes under
``torch.cuda.set_sync_debug_mode(mode)``, so with ``error`` the first operation that makes
the host wait for the GPU (``.item()``, a copy to the CPU, ``nonzero``…) fails the run and
names itself. Batch loading, logging and the other callbacks stay outside. Without CUDA it
does nothing.
"""

from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch

MODES = ("default", "warn", "error")


def _cuda_available() -> bool:
    return torch.cuda.is_available()


class SyncDebugMode(pl.Callback):
    """Runs the LightningModule's ``optimizer_step`` under ``set_sync_debug_mode(mode)``."""

    def __init__(self, mode: str = "error") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.active = False  # whether the steps are wrapped (CUDA is there)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not _cuda_available():
            return
        step = pl_module.optimizer_step
        mode = self.mode

        @functools.wraps(step)
        def checked_step(*args, **kwargs):
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(mode)
            try:
                return step(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(previous)

        pl_module.optimizer_step = checked_step  # an instance attribute: Lightning calls it
        self.active = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active:
            del pl_module.optimizer_step  # the class's own again
            self.active = False

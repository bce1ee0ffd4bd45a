"""What keeps a run's results safe: signals, divergence, atomic checkpoints, RNG state.

* :class:`InterruptHandler`: the first SIGINT/SIGTERM raises :class:`RunInterrupted` in the
  training thread (the run saves a checkpoint and records ``status: interrupted``); a second
  signal exits at once. Files are never half-written because every write is atomic.
* :class:`DivergenceGuard`: a non-finite training loss stops the run at that very step.
* :class:`AtomicCheckpointIO`: Lightning's checkpoint writer, through a temporary file.
* :class:`RngStateCheckpoint`: the global RNG states travel in every checkpoint, so a resumed
  run draws the same shuffles and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from dlexp.compat.lightning import collect_rng_states, set_rng_states
from dlexp.errors import RunDiverged, RunInterrupted
from dlexp.io import atomic_replace

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptHandler:
    """Context manager installing the two-stage SIGINT/SIGTERM handler (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _first(self, signum: int, frame) -> None:
        self.signum = signum
        for sig in SIGNALS:
            signal.signal(sig, self._second)
        raise RunInterrupted(signum)

    @staticmethod
    def _second(signum: int, frame) -> None:
        os._exit(128 + signum)  # at once; atomic writes leave no half-written file

    def __enter__(self) -> InterruptHandler:
        try:
            self._previous = {sig: signal.signal(sig, self._first) for sig in SIGNALS}
        except ValueError:  # not the main thread (e.g. a launcher's worker thread)
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class DivergenceGuard(pl.Callback):
    """Stops training at the first step whose loss is not finite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss.detach()).all():
            raise RunDiverged(float(loss), trainer.global_step, trainer.current_epoch + 1)


class InterruptCheckpoint(pl.Callback):
    """On interruption, saves the state at that moment as ``checkpoints/interrupted.ckpt``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, RunInterrupted) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            self.saved = True


class RngStateCheckpoint(pl.Callback):
    """Saves the global RNG states in each checkpoint and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        states = collect_rng_states(include_cuda=torch.cuda.is_available())
        if "numpy" in states:  # weights_only loading accepts tensors, not numpy arrays
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss)
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = dict(state_dict)
        if "numpy" in states:
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss)
        set_rng_states(states)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file in the same folder, then renames it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_replace(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

"""What keeps a run's results safe: signals, divergence, atomic checkpoints, RNG state.

* :class:`InterruptHandler`: the first SIGINT/SIGTERM raises :class:`RunInterrupted` in the
  training thread (the run saves a checkpoint and records ``status: interrupted``); a second
  one cuts the checkpoint's save short, never the record. Files are never half-written and
  no temporary file is left (see :mod:`dlexp.io`).
* :class:`DivergenceGuard`: a non-finite training loss stops the run within
  ``log_every_n_steps`` steps, naming that step, before any checkpoint of it is written.
* :class:`AtomicCheckpointIO`: Lightning's checkpoint writer, through a temporary file; the
  paths that ModelCheckpoint keeps are stored relative to the checkpoint's folder, so that a
  copied or moved run resumes from (and deletes in) its own ``checkpoints/`` only.
* :func:`save_rng_states` / :func:`restore_rng_states`: the global RNG states travel in every
  checkpoint (the LightningModule's checkpoint hooks), so a resumed run draws the same
  shuffles and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from dlexp.compat.lightning import collect_rng_states, set_rng_states
from dlexp.errors import RunDiverged, RunInterrupted
from dlexp.io import atomic_replace, defer

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptHandler:
    """Context manager installing dlexp's SIGINT/SIGTERM handler (main thread only).

    The first signal raises :class:`RunInterrupted` (at the end of an atomic write when one is
    under way, see :func:`dlexp.io.critical`); the run then saves ``interrupted.ckpt`` and
    records ``status: interrupted``. A second signal cuts that checkpoint's save short (its
    temporary file removed); the record is written all the same. Any other signal, and every
    signal after :meth:`finish` (the run's result is being recorded), is ignored: the
    process exits as soon as its record is complete. A raise that never reaches the run
    (Python drops exceptions raised inside ``__del__`` methods and finalizers) is raised
    again at the next batch by :class:`InterruptCheckpoint`.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saving = False  # InterruptCheckpoint is writing interrupted.ckpt
        self._cut_short = False
        self._finished = False
        self._seen = False  # the run caught the interruption
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self._finished:
            return
        if self.signum is None:
            self.signum = signum
            _raise_when_safe(signum)
        elif self.saving and not self._cut_short:
            self._cut_short = True
            _raise_when_safe(signum)

    def pending(self) -> bool:
        """A signal came whose interruption the run has not caught yet."""
        return self.signum is not None and not self._seen

    def seen(self) -> None:
        """The run caught the interruption and is stopping."""
        self._seen = True

    def finish(self) -> None:
        """From now on signals are ignored (the run is recording how it ended)."""
        self._finished = True

    def __enter__(self) -> InterruptHandler:
        try:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        except ValueError:  # not the main thread (e.g. a launcher's worker thread)
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _raise_when_safe(signum: int) -> None:
    """Raise :class:`RunInterrupted` now, or at the end of the atomic write under way."""

    def interrupt() -> None:
        raise RunInterrupted(signum)

    if not defer(interrupt):
        interrupt()


class DivergenceGuard(pl.Callback):
    """Stops training within ``every`` steps of the first step whose loss is not finite.

    A step only keeps a reference to its loss (no host read, so a GPU's queue never stalls);
    every ``every`` steps (the Trainer's ``log_every_n_steps``), at the end of each training
    epoch and before any validation or checkpoint, the kept losses are checked in one read.
    The run then stops with :class:`RunDiverged` naming the first non-finite step, and no
    checkpoint of the diverged weights is written.
    """

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self._losses: list[torch.Tensor] = []
        self._steps: list[tuple[int, int]] = []  # (global step, epoch from 1) of each loss

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._losses.append(loss.detach())
        self._steps.append((trainer.global_step, trainer.current_epoch + 1))
        if len(self._losses) >= self.every:
            self.check()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.check()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check()

    def on_train_start(self, trainer, pl_module) -> None:
        self._losses.clear()  # (a second fit of the same module starts over)
        self._steps.clear()

    def check(self) -> None:
        """Raise :class:`RunDiverged` if a kept loss is not finite; forget them otherwise."""
        if not self._losses:
            return
        losses, steps = torch.stack(self._losses), self._steps
        self._losses, self._steps = [], []
        finite = torch.isfinite(losses)
        if bool(finite.all()):  # the one read from the device
            return
        first = int((~finite).nonzero()[0, 0])
        step, epoch = steps[first]
        raise RunDiverged(float(losses[first]), step, epoch)


class InterruptCheckpoint(pl.Callback):
    """On interruption, saves the state at that moment as ``checkpoints/interrupted.ckpt``
    (unless a second signal cuts the save short: see :class:`InterruptHandler`)."""

    def __init__(self, path: Path, handler: InterruptHandler) -> None:
        self.path = path
        self.handler = handler
        self.saved = False

    def _raise_pending(self) -> None:
        if self.handler.pending():
            raise RunInterrupted(self.handler.signum)

    def on_train_batch_end(self, *args: Any) -> None:
        self._raise_pending()

    def on_validation_batch_end(self, *args: Any) -> None:
        self._raise_pending()

    def on_test_batch_end(self, *args: Any) -> None:
        self._raise_pending()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, RunInterrupted):
            return
        self.handler.seen()
        if trainer.state.fn != "fit":
            return
        self.handler.saving = True
        try:
            trainer.save_checkpoint(self.path)
            self.saved = True
        except RunInterrupted:
            log.warning("a second signal: %s not saved (last.ckpt is kept)", self.path.name)
        except RunDiverged as exc:
            log.warning("%s not saved: %s (last.ckpt is kept)", self.path.name, exc)
        finally:
            self.handler.saving = False


RNG_STATES_KEY = "rng_states"  # in each checkpoint: the global RNG states when it was saved
OLD_RNG_STATES_KEY = "RngStateCheckpoint"  # (checkpoint["callbacks"] of older checkpoints)


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """Put the global RNG states into ``checkpoint`` (the LightningModule's save hook)."""
    states = collect_rng_states(include_cuda=torch.cuda.is_available())
    if "numpy" in states:  # weights_only loading accepts tensors, not numpy arrays
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss)
    checkpoint[RNG_STATES_KEY] = states


def restore_rng_states(checkpoint: dict[str, Any]) -> None:
    """Restore the global RNG states that :func:`save_rng_states` put into ``checkpoint``.

    Checkpoints written before the states moved there kept them as the state of a callback;
    they are read (and taken out, so Lightning does not look for that callback) as well.
    """
    callbacks = checkpoint.get("callbacks")
    older = callbacks.pop(OLD_RNG_STATES_KEY, None) if isinstance(callbacks, dict) else None
    states = checkpoint.get(RNG_STATES_KEY, older)
    if states is None:
        return
    states = dict(states)
    if "numpy" in states:
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss)
    set_rng_states(states)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file in the same folder, then renames it.

    ModelCheckpoint's state (its folder, best and last paths, top-k paths) is saved relative
    to the checkpoint's folder and read back against the folder the file is loaded from.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        folder = Path(path).parent
        states = checkpoint.get("callbacks")
        if isinstance(states, dict):
            checkpoint = {
                **checkpoint,
                "callbacks": {k: _rebased(v, folder, save=True) for k, v in states.items()},
            }
        with atomic_replace(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        checkpoint = super().load_checkpoint(path, *args, **kwargs)
        states = checkpoint.get("callbacks") if isinstance(checkpoint, dict) else None
        if isinstance(states, dict):
            folder = Path(path).parent
            checkpoint["callbacks"] = {
                k: _rebased(v, folder, save=False) for k, v in states.items()
            }
        return checkpoint


CHECKPOINT_PATH_KEYS = ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path")


def _rebased(state: Any, folder: Path, *, save: bool) -> Any:
    """A ModelCheckpoint state with its paths inside ``folder`` made relative (``save``) or
    relative paths joined to ``folder`` (load); any other state as it is."""
    if not (isinstance(state, dict) and "best_k_models" in state and "dirpath" in state):
        return state

    def move(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        if save:
            inside = Path(value).is_absolute() and Path(value).is_relative_to(folder)
            return os.path.relpath(value, folder) if inside else value
        return value if os.path.isabs(value) else os.path.normpath(folder / value)

    state = dict(state)
    for key in CHECKPOINT_PATH_KEYS:
        state[key] = move(state.get(key))
    if isinstance(state["best_k_models"], dict):
        state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    return state

"""The Lightning Trainer of a run, from the typed ``trainer`` node (:mod:`dlexp.config.trainer`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.profilers import PassThroughProfiler

from dlexp.config.trainer import FREE_GPU, TrainerConfig
from dlexp.distributed import claim_free_gpu, strategy_for
from dlexp.errors import InputError
from dlexp.guards import AtomicCheckpointIO
from dlexp.progress import ProgressBar


class _DropAdvertisements(logging.Filter):
    """Drops Lightning's "Tip: try installing <service>" messages from the console and log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdvertisements())

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (it records nothing) without its per-call context manager.

    Lightning wraps every hook call, batch fetch and optimizer step in ``profiler.profile``:
    about 100 times a training step, each a fresh generator-based context manager. This one
    returns one shared no-op context.
    """

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NOTHING


def build_trainer(
    cfg: TrainerConfig,
    *,
    callbacks: list[pl.Callback],
    loggers: list,
    run_dir: Path,
    resume: Path | None = None,
    verbose: bool = False,
) -> pl.Trainer:
    """A Trainer from the ``trainer`` node; unset (None) limits keep Lightning's defaults.

    ``resume`` is the checkpoint the run continues from (DDP workers are told about it).
    The progress bar is dlexp's (:class:`~dlexp.progress.ProgressBar`); Lightning's model
    summary is printed only when ``verbose`` asks for it (a run prints dlexp's
    :class:`~dlexp.progress.LayerSummary`).
    """
    kwargs = {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}
    callbacks = list(callbacks)
    if cfg.enable_progress_bar:
        callbacks.append(ProgressBar())
    kwargs["enable_model_summary"] = cfg.enable_model_summary and verbose
    kwargs["strategy"] = strategy_for(cfg.strategy, run_dir, resume)
    kwargs.setdefault("benchmark", not cfg.deterministic)
    if cfg.devices == FREE_GPU:
        kwargs["devices"] = claim_free_gpu()
    try:
        return pl.Trainer(
            **kwargs,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],
            profiler=NoProfiler(),
        )
    except (MisconfigurationException, ImportError, TypeError, ValueError) as exc:  # no GPU…
        raise InputError(f"trainer: {' '.join(str(exc).split())}") from None

"""What a run prints on the console: dlexp's own lines, Lightning's routine ones only on demand.

* :class:`QuietLightning` (a filter of the console handler, ``dlexp/conf/hydra/job_logging``):
  Lightning's INFO records (GPU/TPU availability, "Loading `train_dataloader` to estimate…",
  "`Trainer.fit` stopped…", checkpoint restoring) stay out of the console; ``train.log``
  keeps them all, and ``verbose=true`` brings them back (:func:`set_verbose`).
* :class:`ConsoleFormatter`: a message as it is; warnings and errors prefixed with their level.
* :func:`run_summary`: the few lines that end a run: its best validation epoch, its test
  metrics, its directory and the commands that look at it next.

Imports neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.")
# Lightning's warnings that are not the user's doing: its own use of a torch API deprecated
# since torch 2.9; a resumed run's checkpoints/ (dlexp owns the run dir: see dlexp.rundir);
# fewer batches than log_every_n_steps (dlexp logs per epoch, and checks the loss at least
# once per epoch)
QUIET_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Checkpoint directory .* exists and is not empty",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


class QuietLightning(logging.Filter):
    """Drops Lightning's records below WARNING, unless :func:`set_verbose` turned it off."""

    verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if QuietLightning.verbose or record.levelno >= logging.WARNING:
            return True
        return not record.name.startswith(LIGHTNING_LOGGERS)


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO and below, ``warning: message`` / ``error: message`` above."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def set_verbose(verbose: bool) -> None:
    """``verbose=true``: Lightning's routine lines and warnings on the console; else hidden.

    Under Hydra (``dlexp train``) the console handler has the filter; elsewhere (``dlexp
    eval``) Lightning logs through a handler of its own, which gets it here.
    """
    QuietLightning.verbose = verbose
    for name in ("pytorch_lightning", "lightning_fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, QuietLightning) for f in handler.filters):
                handler.addFilter(QuietLightning())
    ours = [f for f in warnings.filters if f[0] == "ignore" and _is_ours(f[1])]
    for entry in ours:
        warnings.filters.remove(entry)
    if not verbose:
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)


def _is_ours(message: Any) -> bool:
    pattern = getattr(message, "pattern", None)
    return pattern is not None and any(pattern.startswith(q) for q in QUIET_WARNINGS)


def _metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_summary(record: dict[str, Any], run_dir: Path, *, multirun: bool) -> list[str]:
    """The lines that end a completed run (one per sweep job: the sweep's table follows)."""
    monitor = record.get("monitor") or {}
    metric = monitor.get("metric", "val/loss")
    best = record.get("best") or {}
    best_text = (
        f"best {metric} {_metric(best[metric])} at epoch {record.get('best_epoch')} of "
        f"{record.get('epochs')}"
        if metric in best
        else f"{record.get('epochs')} epochs"
    )
    test = record.get("test") or {}
    test_text = ", ".join(f"{k.removeprefix('test/')} {_metric(v)}" for k, v in test.items())
    if multirun:
        status = record.get("status", "completed")  # or pruned (an Optuna trial)
        return [f"job {run_dir.name} {status}: {best_text}; test {test_text or '-'}"]
    shown = _shown(run_dir)
    return [
        f"run completed: {shown}",
        f"  {best_text}",
        f"  test: {test_text or 'not run'}",
        f"  next: make tensorboard | dlexp report {shown} | dlexp eval ckpt={shown}",
    ]


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path

"""Callbacks (``dlexp/conf/callbacks/*.yaml``) and the ones every run gets: history, reports."""

from __future__ import annotations

import csv
import functools
import io
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.callbacks import (
    BasePredictionWriter,
    BatchSizeFinder,
    Checkpoint,
    EarlyStopping,
    LearningRateFinder,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
    Timer,
)
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from dlexp.io import atomic_write_text
from dlexp.resume import read_epoch_rows

# Lightning's callback hooks (on_train_batch_end, setup, on_exception ...)
HOOKS = tuple(
    name
    for name, value in vars(pl.Callback).items()
    if callable(value) and name.startswith(("on_", "setup", "teardown"))
)


# Callbacks that Lightning finds in its list by their type (the checkpoint and early-stopping
# callbacks, the progress bar, the tuners ...): they cannot join a CallbackGroup.
FOUND_BY_TYPE = (
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    ModelSummary,
    Timer,
    BatchSizeFinder,
    LearningRateFinder,
    BasePredictionWriter,
)


def why_not_grouped(callback: pl.Callback) -> str | None:
    """Why ``callback`` cannot join a :class:`CallbackGroup`; None when it can."""
    kind = type(callback)
    if (
        kind.state_dict is not pl.Callback.state_dict
        or kind.load_state_dict is not pl.Callback.load_state_dict
    ):
        return "saves state"  # under its own state_key in checkpoints
    if isinstance(callback, FOUND_BY_TYPE):
        return "is found by its type"
    return None


class CallbackGroup(pl.Callback):
    """Callbacks that Lightning calls as one, each hook only on the members that implement it.

    Lightning calls each of its hooks (six a training step) on every callback in its list, a
    few microseconds a call even for a callback that does nothing in it; a group makes that
    one call per hook. Members keep no state in checkpoints and are not found by their type
    (:data:`FOUND_BY_TYPE`); they are called in their order.
    """

    def __init__(self, members: list[pl.Callback]) -> None:
        self.members = list(members)
        for member in self.members:
            if why := why_not_grouped(member):
                raise ValueError(f"{type(member).__name__} {why}: it cannot join a group")
        for hook in HOOKS:
            calls = [
                getattr(m, hook)
                for m in self.members
                if getattr(type(m), hook) is not getattr(pl.Callback, hook)
            ]
            if calls:
                setattr(self, hook, _all_of(calls))

    @classmethod
    def gather(cls, own: list[pl.Callback], others: list[pl.Callback]) -> list[pl.Callback]:
        """The Trainer's callbacks: a group of ``own`` and every one of ``others`` that can
        join it (in that order), then the rest of ``others``."""
        joining = [c for c in others if why_not_grouped(c) is None]
        return [cls([*own, *joining]), *(c for c in others if c not in joining)]


def _all_of(calls: list[Any]):
    def call(*args: Any, **kwargs: Any) -> None:
        for fn in calls:
            fn(*args, **kwargs)

    return call


def build_callbacks(
    cfg: dict[str, Any] | None, run_dir: Path, with_logger: bool = True
) -> list[pl.Callback]:
    """Instantiate every entry of the ``callbacks`` group; checkpoints go to ``run_dir``.

    Without a logger (``logger=none``) a LearningRateMonitor has nowhere to write and is
    left out (``epochs.csv`` still records the learning rate).
    """
    callbacks = []
    for node in (cfg or {}).values():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, LearningRateMonitor) and not with_logger:
            continue
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            callback.dirpath = str(run_dir / "checkpoints")
        callbacks.append(callback)
    return callbacks


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with ``{epoch}`` in file names counted from 1, as in
    ``epochs.csv``, ``metrics.json`` and the progress bar (``epoch002.ckpt``: the 2nd epoch).

    Its :attr:`state_key` (made of settings fixed at construction) is made once: Lightning
    reads it at every hook call, six a training step, and ModelCheckpoint formats it anew.
    Unless it saves within epochs (``every_n_train_steps``, ``train_time_interval``), a
    training step skips its checks.
    """

    def __init__(
        self, *args: Any, every_n_train_steps: int | None = None, train_time_interval=None, **kw
    ) -> None:
        super().__init__(
            *args,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            **kw,
        )
        self.saves_within_epochs = bool(every_n_train_steps) or train_time_interval is not None

    @functools.cached_property
    def state_key(self) -> str:
        return super().state_key

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        if self.saves_within_epochs:  # otherwise ModelCheckpoint's checks would find nothing
            super().on_train_batch_end(*args, **kwargs)

    def format_checkpoint_name(self, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)


def find_checkpoint_callback(callbacks: list[pl.Callback]) -> ModelCheckpoint | None:
    """The first ModelCheckpoint that monitors a metric (it defines the "best" epoch)."""
    return next(
        (c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None
    )


def stop_record(trainer: pl.Trainer, callbacks: list[pl.Callback]) -> dict[str, Any]:
    """Why ``fit`` ended: ``{"by", "epoch", "reason"}`` for ``metrics.json``.

    ``epoch`` counts from 1 like ``epochs.csv``: the last epoch that ran.
    """
    for cb in callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            return {
                "by": "early_stopping",
                "epoch": cb.stopped_epoch + 1,
                "reason": cb.stopping_reason_message or str(cb.stopping_reason.value),
            }
    epoch = trainer.current_epoch  # after fit: the number of epochs completed
    if trainer.max_epochs is not None and epoch >= trainer.max_epochs:
        return {"by": "max_epochs", "epoch": epoch, "reason": f"reached trainer.max_epochs={epoch}"}
    return {"by": "trainer", "epoch": epoch, "reason": "the Trainer stopped (e.g. max_time)"}


class EpochHistory(pl.Callback):
    """Records every epoch's train/val metrics and learning rate into ``epochs.csv``."""

    def __init__(self, path: Path, resume_after_epoch: int = 0) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_after_epoch and path.is_file():  # a resumed run keeps its earlier epochs
            self.rows = read_epoch_rows(path, up_to_epoch=resume_after_epoch)
        self.first_step_at: float | None = None  # unix time of the first training batch
        self._epoch_started = 0.0
        self._lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        # The rate the epoch trains with (as LearningRateMonitor logs it): by the end of the
        # epoch, an epoch-wise schedule has already stepped to the next epoch's rate.
        self._lrs = [optimizer.param_groups[0]["lr"] for optimizer in trainer.optimizers]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith(("train/", "val/")):
                row[key] = round(float(value), 6)
        for i, lr in enumerate(self._lrs):
            row["lr" if i == 0 else f"lr{i}"] = lr
        row["seconds"] = round(time.perf_counter() - self._epoch_started, 3)
        self.rows.append(row)
        self._write()

    @rank_zero_only
    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())

    def best(self, monitor: str, mode: str) -> dict[str, Any] | None:
        """The first epoch's row with the best ``monitor`` value."""
        rows = [r for r in self.rows if monitor in r]
        if not rows:
            return None
        pick = max if mode == "max" else min
        return pick(rows, key=lambda r: r[monitor])


class ConfusionMatrixReport(pl.Callback):
    """After testing: the confusion matrix as CSV in the run dir and as a TensorBoard image."""

    def __init__(self, run_dir: Path, class_names: list[str]) -> None:
        self.path = run_dir / "confusion_matrix.csv"
        self.class_names = class_names

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        matrix = pl_module.test_confusion.compute().cpu()  # every DDP rank takes part
        if trainer.is_global_zero:
            self._write(trainer, matrix)

    def _write(self, trainer: pl.Trainer, matrix) -> None:
        buffer = io.StringIO()  # the csv module quotes class names with commas, quotes, newlines
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["true\\pred", *self.class_names])
        for name, row in zip(self.class_names, matrix.tolist(), strict=True):
            writer.writerow([name, *(int(v) for v in row)])
        atomic_write_text(self.path, buffer.getvalue())
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(
                    "test/confusion_matrix",
                    _confusion_figure(matrix, self.class_names),
                    global_step=trainer.global_step,
                )


def _confusion_figure(matrix, class_names: list[str]):
    """The matrix as a matplotlib Figure (not pyplot's: no global backend or figure state).

    Fixed margins rather than ``tight_layout`` and 80 dpi: drawing it is a tenth of a second
    of every run (of every job of a sweep).
    """
    from matplotlib.figure import Figure

    n = len(class_names)
    side = 0.45 * n if n <= 20 else 0.12 * n  # inches for the cells (counts shown up to 20)
    left, bottom = 0.9 if n <= 12 else 1.4, 0.8 if n <= 12 else 1.3  # room for the labels
    width, height = left + side + 0.2, bottom + side + 0.2
    fig = Figure(figsize=(width, height), dpi=80)
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        top = matrix.max().item() or 1
        for (i, j), v in ((ij, int(matrix[ij])) for ij in _cells(n)):
            ax.text(
                j,
                i,
                v,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > top / 2 else "black",
            )
    return fig


def _cells(n: int):
    return ((i, j) for i in range(n) for j in range(n))

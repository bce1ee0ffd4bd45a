"""A Lightning callback that times each epoch's training and its whole (train + validation).

The benches add it to both a bare Lightning Trainer and ``dlexp train``
(``+callbacks.clock._target_=_clock.EpochClock``), so both pay its small hook cost alike.
Imported only inside the benches' runs: it imports Lightning.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pytorch_lightning as pl


class EpochClock(pl.Callback):
    """Appends ``(train_seconds, epoch_seconds, train_steps)`` per epoch to :attr:`epochs`."""

    epochs: ClassVar[list[tuple[float, float, int]]] = []  # every instance's, in order

    def __init__(self) -> None:
        self._started = self._train_ended = 0.0
        self._steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._train_ended, self._steps = 0.0, 0
        self._started = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self._steps += 1

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._train_ended = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        ended = time.perf_counter()
        train = (self._train_ended or ended) - self._started
        EpochClock.epochs.append((train, ended - self._started, self._steps))

"""Pruning: a sweep job reports each epoch's objective to its Optuna trial, which may stop it.

The job of trial ``n`` is Hydra's job number ``n`` of dlexp's Optuna sweeper; it opens the
sweep's study from its own Hydra config (so it works in the sweeper's process and in a
launcher's) and reports the monitored validation metric (the sweep's objective) after every
validation. When the pruner says so, training stops at the end of that epoch and the run is
recorded as ``status: pruned`` (:func:`dlexp.run.train`), untested.

optuna-integration's ``PyTorchLightningPruningCallback`` is built on the ``lightning``
package (``lightning.pytorch``), not on ``pytorch_lightning``, which dlexp's Trainer is;
its Trainer refuses callbacks of the other package, hence this callback.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from dlexp.config.sweeper import OPTUNA_SWEEPER


class TrialPruning(pl.Callback):
    """Report the checkpoint's monitored metric to ``trial`` after each validation;
    :attr:`pruned_at` is the epoch (from 1) after which the trial was pruned."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.monitor = ""
        self.pruned_at: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor]
        self.monitor = checkpoints[0].monitor if checkpoints else "val/loss"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch + 1
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True  # after this epoch (its checkpoints are saved)


def trial_pruning(hydra_cfg: Any) -> TrialPruning | None:
    """The pruning callback of a job that dlexp's Optuna sweeper launched with a pruner
    (``hydra_cfg``: the job's Hydra config); None for any other job."""
    sweeper = hydra_cfg.get("sweeper") or {}
    if sweeper.get("_target_") != OPTUNA_SWEEPER or sweeper.get("pruner") == "none":
        return None
    import optuna

    from dlexp.compat.optuna import running_trial
    from dlexp.config.sweeper import sweeper_settings
    from dlexp.study import open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Using an existing study" per job
    study = open_study(sweeper_settings(sweeper), hydra_cfg.sweep.dir)
    return TrialPruning(running_trial(study, int(hydra_cfg.job.num)))

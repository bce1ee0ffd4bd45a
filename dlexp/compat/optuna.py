"""Optuna's private APIs that dlexp uses.

Wrapped private APIs (each with a contract test in ``tests/test_compat.py``):

* :func:`running_trial`: ``FrozenTrial._trial_id`` (the storage's id of a trial, which
  ``optuna.trial.Trial(study, trial_id)`` takes; Optuna names trials by number publicly)
"""

from __future__ import annotations

import optuna


def running_trial(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """The live :class:`optuna.trial.Trial` of trial ``number`` of ``study`` (for a job that
    the sweeper launched and that reports its epochs to it)."""
    for frozen in study.get_trials(deepcopy=False):
        if frozen.number == number:
            return optuna.trial.Trial(study, frozen._trial_id)
    raise LookupError(f"study {study.study_name!r} has no trial {number}")

"""``dlexp train -m data.folds=k data.fold=all``: one job per fold of k-fold cross-validation.

``all`` is not a value Hydra knows: :mod:`dlexp.preflight` composes the command line without
it, reads ``data.folds`` (from the command line or an experiment file) and runs the command
line with ``data.fold=0,1,…,k-1`` in its place, the grid sweep Hydra runs and records.
"""

from __future__ import annotations

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from dlexp.errors import ConfigError

ALL_FOLDS = "all"


def all_folds_line(parsed: list[Override]) -> str | None:
    """The override line ``data.fold=all`` of a command line (None when it has none)."""
    for override in parsed:
        plain = not override.is_sweep_override() and not override.is_delete()
        if plain and override.key_or_group == "data.fold" and override.value() == ALL_FOLDS:
            return override.input_line
    return None


def every_fold(line: str, base: DictConfig, multirun: bool) -> str:
    """``data.fold=all`` as the sweep over every fold of ``base``'s ``data.folds``."""
    folds = OmegaConf.select(base, "data.folds")
    if not isinstance(folds, int) or isinstance(folds, bool):
        raise ConfigError(
            "data.fold", ALL_FOLDS, "needs data.folds=<k>, one number of folds for every job"
        )
    if not multirun:
        raise ConfigError("data.fold", ALL_FOLDS, "is one job per fold: add -m/--multirun")
    key = line.partition("=")[0]
    return f"{key}={','.join(str(i) for i in range(folds))}"

"""The Optuna study of a sweep: its storage, sampler, pruner and search space.

Shared by the sweeper (``hydra_plugins/dlexp_sweeper/optuna_sweeper.py``), which asks for
trials and tells their results, and by each job (:mod:`dlexp.pruning`), which reports its
epochs to its own trial: both open the study from the same ``hydra.sweeper`` keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

from dlexp.config.sweeper import STUDY_FILE, OptunaSweeperConfig
from dlexp.errors import ConfigError

Distributions = dict[str, optuna.distributions.BaseDistribution]


def storage_url(cfg: OptunaSweeperConfig, sweep_dir: str | Path) -> str:
    """``hydra.sweeper.storage``, or the SQLite file in the sweep dir."""
    return cfg.storage or f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}"


def build_pruner(cfg: OptunaSweeperConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner named by ``hydra.sweeper.pruner``; steps are epochs (1, 2, ...)."""
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs
        )
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.warmup_epochs)
    return optuna.pruners.NopPruner()


def build_sampler(cfg: OptunaSweeperConfig, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler, seeded from ``(seed, trials already in the study)``: a study continued
    (``dlexp resume-sweep``, a shared storage) draws points its earlier runs did not."""
    import numpy as np

    mixed = int(np.random.SeedSequence([seed, trials]).generate_state(1)[0])
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=mixed)
    return optuna.samplers.TPESampler(seed=mixed)


def open_study(
    cfg: OptunaSweeperConfig, sweep_dir: str | Path, seed: int | None = None
) -> optuna.Study:
    """The sweep's study, created when missing; with ``seed``, its sampler seeded as
    :func:`build_sampler` says (a job only reports, and needs no sampler)."""
    storage = storage_url(cfg, sweep_dir)
    pruner = build_pruner(cfg)
    study = optuna.create_study(
        study_name=cfg.study_name,
        storage=storage,
        direction=cfg.direction,
        pruner=pruner,
        load_if_exists=True,
    )
    if seed is None:
        return study
    sampler = build_sampler(cfg, seed, len(study.get_trials(deepcopy=False)))
    return optuna.load_study(
        study_name=cfg.study_name, storage=storage, sampler=sampler, pruner=pruner
    )


def search_space(lines: Iterable[str]) -> tuple[Distributions, list[str]]:
    """Optuna distributions of the sweep overrides among ``lines`` (``key=choice(...)``,
    ``interval``, ``tag(log, interval(...))``, ``range``), and the other lines as they are;
    of two lines for one key the later wins (a value on the command line fixes a key that
    ``hydra.sweeper.params`` searches)."""
    space: Distributions = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(lines)):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(key, override.value())
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def distribution(key: str, sweep: Any) -> optuna.distributions.BaseDistribution:
    """One sweep of Hydra's grammar as an Optuna distribution."""
    dists = optuna.distributions
    if isinstance(sweep, ChoiceSweep):
        return dists.CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        values = list(_range_values(sweep))
        return dists.CategoricalDistribution(values)
    if isinstance(sweep, IntervalSweep):
        log = "log" in sweep.tags  # (the ends are checked up front: check_optuna_sweep)
        low, high = sweep.start, sweep.end
        if isinstance(low, int) and isinstance(high, int):
            return dists.IntDistribution(low, high, log=log)
        return dists.FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(
        f"hydra.sweeper.params.{key}", sweep, "must be choice(), range(), interval() or a value"
    )


def _range_values(sweep: RangeSweep) -> Iterable[float]:
    value, stop, step = sweep.start, sweep.stop, sweep.step
    while (step > 0 and value < stop) or (step < 0 and value > stop):
        yield value
        value += step


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as Hydra overrides (``key=value``)."""
    return [f"{key}={_literal(value)}" for key, value in params.items()]


def _literal(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return str(value)

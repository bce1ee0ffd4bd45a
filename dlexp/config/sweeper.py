"""The Optuna sweeper's keys (``hydra.sweeper.*`` with ``hydra/sweeper=optuna_study``).

dlexp's own sweeper (``hydra_plugins/dlexp_sweeper/optuna_sweeper.py``) on Optuna's ask/tell
API: one trial per job, job number = trial number, the study in the sweep dir by default.
Hydra passes these keys to the sweeper's constructor; :mod:`dlexp.preflight` checks them
before anything runs (no Optuna import).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlexp.config.fields import param

OPTUNA_SWEEPER = "hydra_plugins.dlexp_sweeper.optuna_sweeper.OptunaSweeper"
STUDY_FILE = "optuna.db"  # the default storage: sqlite:///<sweep dir>/optuna.db


@dataclass
class OptunaSweeperConfig:
    """``hydra.sweeper.*``: the study, its sampler and pruner, and the search space.

    ``params`` maps config keys to Hydra's sweep grammar: ``choice(32, 64)``,
    ``interval(0.0, 0.5)``, ``tag(log, interval(1e-4, 1e-2))``, ``range(1, 4)`` or a
    plain value. The objective is each job's monitored validation metric at its best
    epoch (``callbacks.model_checkpoint.monitor``, val/acc by default); ``direction``
    must agree with that callback's ``mode``.
    """

    _target_: str = OPTUNA_SWEEPER
    direction: str = param("maximize", choices=("maximize", "minimize"))
    study_name: str = "dlexp"
    # an Optuna storage URL; null: sqlite:///<sweep dir>/optuna.db (what resume-sweep continues)
    storage: str | None = None
    # trials in the study in all, counting those of an earlier, interrupted run of the sweep
    n_trials: int = param(20, ge=1)
    n_jobs: int = param(1, ge=1)  # trials launched together (for parallel launchers)
    sampler: str = param("tpe", choices=("tpe", "random"))
    # the sampler's seed (null: the run's `seed`); each start of the sweep seeds the sampler
    # from (seed, trials already in the study), so a continued study draws new points
    seed: int | None = param(None, ge=0, lt=2**32)
    # prune a trial from its per-epoch value of the objective: median (below the median of
    # earlier trials at the same epoch), hyperband, or none
    pruner: str = param("median", choices=("median", "hyperband", "none"))
    startup_trials: int = param(5, ge=0)  # median: completed trials before any pruning
    # the epochs every trial runs before it may be pruned (hyperband: its smallest budget)
    warmup_epochs: int = param(1, ge=1)
    params: dict[str, Any] = field(default_factory=dict)


def sweeper_settings(node: Any) -> OptunaSweeperConfig:
    """The typed ``hydra.sweeper`` keys: from a composed node (a job's Hydra config, a saved
    ``multirun.yaml``) or from the keyword arguments Hydra gives the sweeper."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    values = {
        k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
        for k, v in dict(node).items()
    }
    return OptunaSweeperConfig(**values)


def check_optuna_sweep(sweeper: Any, monitor: Any, swept: list[str]) -> list[str]:
    """Validate ``hydra.sweeper`` (a composed node) and return the overrides that put each
    searched key (``params`` and the command line's ``swept`` lines) at the ends of its range
    (each choice, an interval's bounds): jobs :mod:`dlexp.preflight` composes and checks
    before the first trial runs.

    ``monitor``: the ``callbacks.model_checkpoint`` node (the objective and its mode).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    from dlexp.config.fields import validate
    from dlexp.errors import ConfigError

    settings = sweeper_settings(sweeper)
    validate(settings, "hydra.sweeper.")
    mode = monitor.get("mode") if monitor is not None else None
    wanted = {"max": "maximize", "min": "minimize"}.get(str(mode))
    if wanted and settings.direction != wanted:
        raise ConfigError(
            "hydra.sweeper.direction",
            settings.direction,
            f"must be {wanted}: the objective, {monitor.get('monitor')}, is best at its {mode}",
        )
    lines = [*(f"{key}={value}" for key, value in settings.params.items()), *swept]
    ends: list[str] = []
    for override in OverridesParser.create().parse_overrides(lines):
        key, sweep = override.get_key_element(), override.value()
        if isinstance(sweep, ChoiceSweep):
            points = list(sweep.list)
        elif isinstance(sweep, RangeSweep):
            points = [sweep.start]
        elif isinstance(sweep, IntervalSweep):
            points = [sweep.start, sweep.end]
            if not sweep.start < sweep.end or ("log" in sweep.tags and sweep.start <= 0):
                raise ConfigError(
                    key,
                    f"interval({sweep.start}, {sweep.end})",
                    "a search interval needs low < high (and low > 0 with tag(log))",
                )
        else:
            points = [sweep]
        ends += [f"{key}={point}" for point in points]
    return ends

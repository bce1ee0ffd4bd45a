"""dlexp's Optuna sweeper (``hydra/sweeper=optuna_study``): Optuna's ask/tell API, one job a trial.

Trial ``n`` runs as Hydra job ``n`` (its directory ``<sweep dir>/n``), so a job finds its own
trial from its Hydra config and reports its epochs to it for pruning (:mod:`dlexp.pruning`).
The study lives in ``<sweep dir>/optuna.db`` unless ``hydra.sweeper.storage`` names another;
``dlexp resume-sweep`` opens it again: finished trials are kept, trials that were running when
the sweep stopped run again with their own parameters in their own directories (continuing
from their checkpoints), and new trials are asked for until the study holds ``n_trials``.
A job's ``metrics.json`` status tells its trial's state: ``completed`` with a finite value
is COMPLETE, ``pruned`` is PRUNED, any other ending FAIL.

Hydra imports every module of ``hydra_plugins`` whenever it starts (``dlexp train --help``
and a rejected override included): Optuna (~0.5 s) is imported only when this sweeper runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dlexp.config.sweeper import sweeper_settings
from dlexp.io import atomic_write_text

if TYPE_CHECKING:
    import optuna
    from optuna.trial import TrialState

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Ask Optuna for trials, run each as a job, tell it how the job ended."""

    def __init__(self, **settings: Any) -> None:
        self.settings = sweeper_settings(settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        from dlexp.study import open_study, search_space

        settings = self.settings
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        declared = [f"{key}={value}" for key, value in settings.params.items()]
        space, fixed = search_space([*declared, *arguments])
        seed = self.config.seed if settings.seed is None else settings.seed
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # each job prints its own line
        study = open_study(settings, sweep_dir, seed=seed)
        interrupted = []
        if "resume=auto" in arguments:  # trials the interrupted sweep left running
            interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            for trial in interrupted:
                log.info("trial %d was interrupted: it runs again", trial.number)
                self._run(study, [trial], fixed)
        held = len(study.get_trials(deepcopy=False))
        if held >= settings.n_trials and not interrupted:
            log.warning(
                f"study {settings.study_name!r} holds {held} trials already, n_trials is "
                f"{settings.n_trials}: no new trial (raise hydra.sweeper.n_trials for more)"
            )
        while (left := settings.n_trials - len(study.get_trials(deepcopy=False))) > 0:
            batch = [study.ask(space) for _ in range(min(settings.n_jobs, left))]
            self._run(study, batch, fixed)
        write_results(study, sweep_dir)

    def _run(self, study: optuna.Study, trials: Sequence[Any], fixed: list[str]) -> None:
        """Launch ``trials`` (consecutive numbers) as jobs and tell the study their ends."""
        from dlexp.study import trial_overrides

        jobs = [[*fixed, *trial_overrides(trial.params)] for trial in trials]
        returns = self.launcher.launch(jobs, initial_job_idx=trials[0].number)
        for trial, ret in zip(trials, returns, strict=True):
            state, value = outcome(ret)
            study.tell(trial.number, value, state=state, skip_if_finished=True)


def outcome(ret: JobReturn) -> tuple[TrialState, float | None]:
    """A finished job's trial state (from its ``metrics.json``) and objective value."""
    from optuna.trial import TrialState

    from dlexp.errors import DlexpError
    from dlexp.resume import read_record

    value = ret.return_value if ret.status == JobStatus.COMPLETED else None
    try:
        record = read_record(Path(ret.hydra_cfg.hydra.runtime.output_dir)) or {}
    except DlexpError:
        record = {}
    status = record.get("status")
    if status == "pruned":
        return TrialState.PRUNED, None
    if status == "completed" and isinstance(value, float) and math.isfinite(value):
        return TrialState.COMPLETE, value
    return TrialState.FAIL, None


def write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """``optimization_results.yaml``: the best trial (COMPLETE trials only) and the counts."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    results: dict[str, Any] = {"trials": {k: v for k, v in counts.items() if v}}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
    atomic_write_text(
        sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results))
    )

"""The grid sweeper and the launcher of ``dlexp train -m`` (``conf/hydra/{sweeper,launcher}``);
the Optuna sweeper (``hydra/sweeper=optuna_study``) is in :mod:`.optuna_sweeper`.

Hydra instantiates plugins only from the ``hydra_plugins`` namespace package, hence their home
here rather than in ``dlexp``.

Hydra's BasicSweeper composes every job of a batch once to validate it, then its launcher
composes each job again to run it. ``dlexp train`` has already composed and validated every
job of the command line, with dlexp's own checks, before Hydra starts
(:func:`dlexp.preflight.check_command_line`), so the sweeper skips the validation, and the
launcher composes only the jobs that pick other options than the first job: the others are
its config with their values set (:class:`dlexp.compat.hydra.launch.JobConfigs`). Each
composition is about 0.15 s of what a short job costs beyond its training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import open_dict

from dlexp.compat.hydra import BasicLauncher, BasicSweeper
from dlexp.compat.hydra.launch import JobConfigs

log = logging.getLogger(__name__)


class PrecheckedBasicSweeper(BasicSweeper):
    """Hydra's BasicSweeper for job lists that :mod:`dlexp.preflight` has validated."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing to do: every job was composed and validated before Hydra started."""


class PrecheckedBasicLauncher(BasicLauncher):
    """Hydra's BasicLauncher (jobs one after the other, in this process), composing only the
    jobs that differ from the first in more than values."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally")
        configs = JobConfigs(self.hydra_context.config_loader, self.config)
        runs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = configs(list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            runs.append(
                run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=sweep_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

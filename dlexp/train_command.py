"""``dlexp train`` and ``dlexp resume-sweep``: check the command line, then run it with Hydra.

Every job is typed and checked up front (:mod:`dlexp.preflight`, then
:mod:`dlexp.buildcheck`), the run or sweep directory is claimed (:mod:`dlexp.rundir`), and
Hydra runs each job through :func:`_train_job`, which reports every ending as a status and
never lets one job stop a sweep.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from dlexp.config.sweeper import OPTUNA_SWEEPER
from dlexp.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TRAINING_FAILED,
    ArgumentParser,
    ConfigError,
    DlexpError,
    InputError,
    RunDiverged,
    RunInterrupted,
    one_line,
)

log = logging.getLogger("dlexp")


def train_command(args: list[str]) -> int:
    """``dlexp train [hydra overrides]``: check the command line, then hand it to Hydra."""
    if any(a in ("--help", "-h") for a in args):
        from dlexp.train_help import print_train_help

        print_train_help()
        return EXIT_OK
    from dlexp.compat.hydra import hydra_args_parser
    from dlexp.config import new_run_id, register_configs
    from dlexp.preflight import check_command_line

    register_configs()
    new_run_id()
    args = _expand_config_dir(_expand_resume(args))
    parsed = hydra_args_parser().parse_args(args)
    modes = [
        flag
        for flag, given in (
            ("-m/--multirun", parsed.multirun),
            ("--cfg", parsed.cfg),
            ("--info", parsed.info),
            ("-sc/--shell-completion", parsed.shell_completion),
        )
        if given
    ]
    if len(modes) > 1:
        raise InputError(f"{' and '.join(modes)}: give one of them (Hydra runs one mode)")
    if parsed.hydra_help or parsed.info or parsed.shell_completion:
        _run_hydra(args, lambda cfg: None)
        return EXIT_OK
    checked = check_command_line(
        parsed.overrides,
        multirun=parsed.multirun,
        config_dir=parsed.config_dir,
        config_name=parsed.config_name or "config",
        writes=not parsed.cfg,
    )
    args = [checked.expanded.get(a, a) for a in args]  # data.fold=all: every fold
    if parsed.cfg:  # print the composed config, run nothing
        _run_hydra(args, lambda cfg: None)
        return EXIT_OK
    from dlexp.resume_contract import check_resume_command

    check_resume_command(checked.configs, multirun=checked.multirun)
    from dlexp.buildcheck import check_buildable

    check_buildable(checked.configs)
    if checked.grid and not any(a.startswith("hydra/sweeper=") for a in args):
        args = [*args, "hydra/sweeper=grid"]  # every job is checked: Hydra need not compose twice
    if checked.basic_launcher and not any(a.startswith("hydra/launcher=") for a in args):
        args = [*args, "hydra/launcher=prechecked"]  # composes only jobs that pick other options
    args = [*args, *checked.home_dirs]  # Hydra would create a folder named ~
    from dlexp.reports.hydra_callback import SweepSummary

    SweepSummary.last_rows = []
    statuses: list[str] = []
    try:
        _run_hydra(args, lambda cfg: _owned_job(cfg, checked, statuses), checked)
    except RunInterrupted as exc:
        print(
            f"error: dlexp train: {exc}; the run is recorded as interrupted "
            "(continue it with resume=<run dir> or dlexp resume-sweep <sweep dir>)",
            file=sys.stderr,
        )
        return exc.exit_code
    if checked.multirun:
        # Launchers that run jobs in other processes (joblib, SLURM) report through the disk.
        statuses = [row["status"] for row in SweepSummary.last_rows] or statuses
    failed = [s for s in statuses if s not in ("completed", "pruned")]
    if checked.multirun and statuses:
        from dlexp.reports.summary import count_statuses

        print(f"sweep: {count_statuses(statuses)}", file=sys.stderr)
    if "bad_input" in statuses and not checked.multirun:
        return EXIT_BAD_INPUT
    return EXIT_TRAINING_FAILED if failed else EXIT_OK


def _expand_resume(args: list[str]) -> list[str]:
    """``resume=<run dir>`` -> that run's own overrides, its directory and ``resume=<run dir>``.

    Overrides given beside ``resume`` come after the run's own (e.g. more epochs).
    """
    wanted = [a for a in args if a.startswith("resume=") and a != "resume=auto"]
    if not wanted:
        return args
    import yaml

    from dlexp.resume import run_dir_of

    run_dir = run_dir_of(wanted[-1].split("=", 1)[1])
    saved = run_dir / ".hydra" / "overrides.yaml"
    try:
        listed = yaml.safe_load(saved.read_text(encoding="utf-8")) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{saved}: unreadable ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(listed, list) or not all(isinstance(o, str) for o in listed):
        raise InputError(f"{saved}: not Hydra's list of the run's overrides")
    own = [o for o in listed if not o.startswith(("resume=", "hydra.run.dir=", "overwrite="))]
    rest = [a for a in args if not a.startswith("resume=")]
    return [*own, *rest, f"hydra.run.dir={run_dir}", f"resume={run_dir}"]


def _expand_config_dir(args: list[str]) -> list[str]:
    """``--config-dir``/``-cd`` with ``~`` expanded (Hydra takes the path as written)."""
    out = list(args)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if eq and flag in ("--config-dir", "-cd") and value.startswith("~"):
            out[i] = f"{flag}={Path(value).expanduser()}"
        elif arg in ("--config-dir", "-cd") and i + 1 < len(out) and out[i + 1].startswith("~"):
            out[i + 1] = str(Path(out[i + 1]).expanduser())
    return out


def resume_sweep_command(args: list[str]) -> int:
    """``dlexp resume-sweep <sweep dir>``: finish a sweep in its own directory.

    Completed jobs are kept, interrupted ones continue from their checkpoints, failed ones
    run again; the sweep ends with a complete summary.
    """
    parser = ArgumentParser(prog="dlexp resume-sweep", description=resume_sweep_command.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    sweep_dir = parser.parse_args(args).sweep_dir.expanduser().resolve()
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        raise ConfigError(
            "sweep_dir", str(sweep_dir), "must be a sweep directory (with multirun.yaml)"
        )
    from omegaconf import OmegaConf

    given = OmegaConf.load(saved).hydra.overrides  # the command line: Hydra's keys and the task's
    hydra_keys = [o for o in given.hydra if not o.startswith("hydra.sweep.dir=")]
    task = [o for o in given.task if not o.startswith(("resume=", "overwrite="))]
    return train_command(["-m", *hydra_keys, *task, f"hydra.sweep.dir={sweep_dir}", "resume=auto"])


def _run_hydra(args: list[str], task: Callable, checked=None) -> None:
    """Run ``task`` as Hydra's app; with ``checked`` (a run), its output dir held throughout."""
    import hydra

    from dlexp.config import CONF_DIR
    from dlexp.rundir import claim_output_dir

    main = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")(task)
    lock = claim_output_dir(checked) if checked else None  # before Hydra writes .hydra/
    saved = sys.argv
    sys.argv = ["dlexp", *args]  # the program shell completion registers and calls
    try:
        main()
    finally:
        sys.argv = saved
        if lock:
            lock.release()


def _owned_job(cfg, checked, statuses: list[str]) -> float:
    """:func:`_train_job` holding the job's directory (refused, writing nothing, when another
    process holds it; see :mod:`dlexp.rundir`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlexp.rundir import claim_job_dir

    hydra_cfg = HydraConfig.get()
    try:
        lock = claim_job_dir(
            Path(hydra_cfg.runtime.output_dir),
            multirun=hydra_cfg.mode == RunMode.MULTIRUN,
            resume=cfg.get("resume") is not None,
        )
    except InputError as exc:
        print(f"error: dlexp train: {exc}", file=sys.stderr)
        statuses.append("bad_input")
        return float("nan")
    try:
        return _train_job(cfg, checked, statuses)
    finally:
        if lock:
            lock.release()


def _train_job(cfg, checked, statuses: list[str]) -> float:
    """Run one job inside Hydra; record its status and return its objective.

    The objective (the monitored validation metric at the best epoch, NaN when the job did not
    complete) is what sweepers such as Optuna optimize. Errors are reported, never raised, so
    a failing job never stops a sweep.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from pytorch_lightning.utilities import rank_zero_only

    from dlexp.config import to_config
    from dlexp.console import run_summary
    from dlexp.run import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    status, error = "failed", ""
    try:
        # checked up front; a job a launcher runs in another process is typed here
        config = checked.config_for(overrides) or to_config(cfg)
        record = train(config, run_dir, overrides, pruning=_trial_pruning(hydra_cfg))
        statuses.append(record["status"])
        if rank_zero_only.rank == 0:
            for line in run_summary(record, run_dir, multirun=multirun):
                log.info(line)
        return float(record["best"].get(record["monitor"]["metric"], float("nan")))
    except DlexpError as exc:
        error = one_line(str(exc))
        print(f"error: dlexp train: {error}", file=sys.stderr)
        if isinstance(exc, RunDiverged):
            status = "diverged"
        if exc.exit_code == EXIT_BAD_INPUT:
            status = "bad_input"
            first = rank_zero_only.rank == 0
            if first and not multirun and not (run_dir / "metrics.json").exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # leave nothing that looks like a run
    except Exception as exc:  # a bug or an unexpected library error: record, do not crash a sweep
        error = one_line(f"{type(exc).__name__}: {exc}")
        log.debug("unexpected error", exc_info=True)
        print(f"error: {error} (traceback in {run_dir}/train.log)", file=sys.stderr)
    statuses.append(status)
    # (SLURM tasks of one DDP job all run this; global rank 0 records)
    if multirun and rank_zero_only.rank == 0 and not (run_dir / "metrics.json").exists():
        from dlexp.io import atomic_write_json

        atomic_write_json(
            run_dir / "metrics.json", {"status": status, "error": error, "overrides": overrides}
        )
    return float("nan")


def _trial_pruning(hydra_cfg):
    """The pruning callback of a job of dlexp's Optuna sweeper (None for other jobs)."""
    if hydra_cfg.sweeper.get("_target_") != OPTUNA_SWEEPER:
        return None  # (other sweeps need no Optuna installed)
    from dlexp.pruning import trial_pruning

    return trial_pruning(hydra_cfg)

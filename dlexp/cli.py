"""The ``dlexp`` command: ``dlexp <command> [args]``.

``train`` is a Hydra application (overrides, ``-m``, ``--cfg job``, ``--help``); the other
commands take ``key=value`` arguments. Exit codes: 0 success, 1 training failure, 2 bad input.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from dlexp.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_TRAINING_FAILED, DlexpError

log = logging.getLogger("dlexp")

USAGE = """usage: dlexp <command> [arguments]

commands:
  train [overrides]   train (and test) one configuration; -m for a sweep; --help for the groups
  eval ckpt=<run dir|.ckpt> [overrides]
                      test a trained run again (its own data config, or overridden); eval.json
  predict ckpt=<run dir|.ckpt> inputs=<image|folder> [topk=5] [out=<csv>]
                      top-k classes of PNG/JPEG images, printed and written as CSV
  help                show this message

Exit codes: 0 success, 1 training failure, 2 bad input.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m dlexp``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return EXIT_OK if argv else EXIT_BAD_INPUT
    command, rest = argv[0], argv[1:]
    handler = COMMANDS.get(command)
    if handler is None:
        return _fail(f"command={command}: unknown command; choose one of: {', '.join(COMMANDS)}")
    try:
        return handler(rest)
    except DlexpError as exc:
        return _fail(f"dlexp {command}: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        return _fail(f"dlexp {command}: interrupted", 130)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# -- train -------------------------------------------------------------------------------------

_HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc")


def train_command(args: list[str]) -> int:
    """``dlexp train [hydra overrides]``: check the command line, then hand it to Hydra."""
    from hydra._internal.utils import get_args_parser

    from dlexp.config import register_configs
    from dlexp.preflight import check_command_line

    register_configs()
    parsed = get_args_parser().parse_args(args)
    if not any(flag in args for flag in _HYDRA_INFO_FLAGS):
        check_command_line(
            parsed.overrides,
            multirun=parsed.multirun,
            config_dir=parsed.config_dir,
            config_name=parsed.config_name or "config",
        )
    statuses: list[str] = []
    _run_hydra(args, lambda cfg: statuses.append(_train_job(cfg)))
    failed = [s for s in statuses if s not in ("completed",)]
    if parsed.multirun and statuses:
        print(
            f"sweep: {len(statuses) - len(failed)} of {len(statuses)} jobs completed"
            + (f", {len(failed)} failed" if failed else ""),
            file=sys.stderr,
        )
    if "bad_input" in statuses and not parsed.multirun:
        return EXIT_BAD_INPUT
    return EXIT_TRAINING_FAILED if failed else EXIT_OK


def _run_hydra(args: list[str], task: Callable) -> None:
    import hydra

    from dlexp.config import CONF_DIR

    main = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")(task)
    saved = sys.argv
    sys.argv = ["dlexp train", *args]
    try:
        main()
    finally:
        sys.argv = saved


def _train_job(cfg) -> str:
    """Run one job inside Hydra; return its status. Errors are reported, never raised."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlexp.run import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        record = train(cfg, run_dir, list(hydra_cfg.overrides.task))
        log.info("run %s: %s (test %s)", record["status"], run_dir, record.get("test"))
        return record["status"]
    except DlexpError as exc:
        print(f"error: dlexp train: {exc}", file=sys.stderr)
        if exc.exit_code == EXIT_BAD_INPUT:
            if not multirun and not (run_dir / "metrics.json").exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # leave nothing that looks like a run
            return "bad_input"
        return "failed"
    except Exception as exc:  # a bug or an unexpected library error: record, do not crash a sweep
        log.debug("unexpected error", exc_info=True)
        print(
            f"error: {type(exc).__name__}: {exc} (traceback in {run_dir}/train.log)",
            file=sys.stderr,
        )
        return "failed"


def key_values(args: list[str], command: str) -> dict[str, str]:
    """``key=value`` arguments of the non-Hydra commands, in order; anything else is bad input."""
    from dlexp.errors import InputError

    parsed: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise InputError(f"{arg}: expected key=value (see: dlexp {command} --help)")
        if key in parsed:
            raise InputError(f"{arg}: {key} given twice")
        parsed[key] = value
    return parsed


def _lazy(module: str, name: str) -> Callable[[list[str]], int]:
    """A command implemented in ``module`` (imported when the command runs)."""

    def command(args: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return command


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "eval": _lazy("dlexp.evaluate", "eval_command"),
    "predict": _lazy("dlexp.predict", "predict_command"),
}

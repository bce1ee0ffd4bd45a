"""The ``dlexp`` command: ``dlexp <command> [args]``.

``train`` is a Hydra application (overrides, ``-m``, ``--cfg job``, ``--help``); the other
commands take ``key=value`` arguments. Exit codes: 0 success, 1 training failure, 2 bad input.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from dlexp.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    PATH_ERRNOS,
    DlexpError,
    InputError,
    one_line,
    path_error,
)

log = logging.getLogger("dlexp")

USAGE = """usage: dlexp <command> [arguments]

commands:
  train [overrides]   train (and test) one configuration; -m for a sweep; --help for the groups
  eval ckpt=<run dir|.ckpt> [overrides]
                      test a trained run again (its own data config, or overridden); eval.json
  predict ckpt=<run dir|.ckpt> inputs=<image|folder> [topk=5] [out=<csv>]
                      top-k classes of PNG/JPEG images, printed and written as CSV
  models [overrides]  the registered models: parameters, MACs and input support for the data
  report PATHS        summary tables, seed groups and plots of a sweep dir or run dirs
  inspect <run dir|.ckpt> [out=<dir>]
                      what the layers learned: first-layer filters, feature maps (PNGs)
  inspect activations [out=<png>]
                      every activation option and its derivative on one figure
  resume-sweep DIR    finish an interrupted sweep: keep completed jobs, resume the others
  help                show this message
  -V, --version       show dlexp's version

Exit codes: 0 success, 1 training failure, 2 bad input.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m dlexp``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        # the installed distribution's version (dlexp.__version__ when running from a source
        # tree that is not installed); imports neither torch nor Lightning
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("dlexp")
        except PackageNotFoundError:
            from dlexp import __version__ as shown
        print(f"dlexp {shown}")
        return EXIT_OK
    if argv and argv[0] in ("-sc", "--shell-completion"):  # what Hydra's completion calls
        from dlexp.completion import complete

        return complete(argv)
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
    except OSError as exc:
        if exc.errno not in PATH_ERRNOS:
            raise
        return _fail(f"dlexp {command}: {path_error(exc, rest)}")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return code


def key_values(args: list[str], command: str) -> dict[str, str]:
    """``key=value`` arguments of the non-Hydra commands, in order; anything else is bad input."""
    from dlexp.bounds import check_override_sizes

    check_override_sizes(args)
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
    "train": _lazy("dlexp.train_command", "train_command"),
    "eval": _lazy("dlexp.evaluate", "eval_command"),
    "predict": _lazy("dlexp.predict", "predict_command"),
    "models": _lazy("dlexp.models.table", "models_command"),
    "report": _lazy("dlexp.reports.command", "report_command"),
    "inspect": _lazy("dlexp.inspect.command", "inspect_command"),
    "resume-sweep": _lazy("dlexp.train_command", "resume_sweep_command"),
}

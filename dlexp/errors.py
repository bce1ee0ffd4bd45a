"""Error types that map to dlexp's exit codes; each is reported as one line, no traceback.

* :class:`ConfigError`: a bad value of one key (names the key, the value, what is allowed),
  and :class:`InputError`: other bad input (a missing file, a corrupt checkpoint): exit 2.
* :class:`TrainingError` (and :class:`RunDiverged`): a run that started but could not
  finish; its status is recorded in ``metrics.json``: exit 1.
* :class:`RunInterrupted`: SIGINT/SIGTERM during a run: exit 128 + the signal number.
"""

from __future__ import annotations

import argparse
import errno
import signal

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_BAD_INPUT = 2


class DlexpError(Exception):
    """Base class of the errors dlexp reports as one readable line."""

    exit_code = EXIT_TRAINING_FAILED


class ConfigError(DlexpError, ValueError):
    """Bad user input: names the key, the value given and what is allowed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)}: {allowed}")


class InputError(DlexpError):
    """Bad input that is not a single config key (a missing file, a corrupt checkpoint)."""

    exit_code = EXIT_BAD_INPUT


class TrainingError(DlexpError):
    """A failure during training (divergence, crash): the run records its status."""

    exit_code = EXIT_TRAINING_FAILED


SHOWN_CHARS = 200  # a value echoed in an error is cut to this many characters
MESSAGE_CHARS = 480  # and a whole error line to this many


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (the end often says why)."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def one_line(message: str, limit: int = MESSAGE_CHARS) -> str:
    """``message`` as one line of at most ``limit`` characters."""
    lines = (line.strip() for line in str(message).splitlines())
    return shorten(" ".join(line for line in lines if line), limit)


# A path given as input that the OS cannot even look up: bad input, wherever it is found.
PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP)


def path_error(exc: OSError, args: list[str]) -> str:
    """One line for ``exc`` (see :data:`PATH_ERRNOS`) naming the argument among ``args``
    whose path it is about (the path itself when none is)."""
    path = str(exc.filename or "")
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENAMETOOLONG:
        reason += " (a name over 255 bytes or a path over 4096)"
    given = [(a.split("=", 1)[-1], a) for a in args]
    matches = [(len(v), a) for v, a in given if v and path and (v in path or path in v)]
    shown = max(matches)[1] if matches else path  # the longest: "2" is in many paths
    return f"{shorten(one_line(shown))}: {reason}"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as written in YAML and on the command line
    if isinstance(value, str):
        shown = repr(value) if (" " in value or value == "") else value
    elif isinstance(value, int) and value.bit_length() > 600:  # str() refuses > 4300 digits
        shown = f"<an integer of {int(value.bit_length() * 0.30103) + 1} digits>"
    elif isinstance(value, (int, float)):
        shown = str(value)
    else:
        shown = repr(value)
    return shorten(shown)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one :class:`InputError` line (exit 2)."""

    def error(self, message: str):
        raise InputError(f"{message} (see: dlexp {self.prog.split()[-1]} --help)")


class RunInterrupted(BaseException):
    """Raised in the training thread by the first SIGINT/SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RunDiverged(TrainingError):
    """The training loss became NaN or infinite."""

    def __init__(self, loss: float, step: int, epoch: int) -> None:
        super().__init__(f"diverged: training loss {loss} at step {step} (epoch {epoch})")
        self.loss = str(loss)  # "nan" / "inf": JSON has no literal for them
        self.step, self.epoch = step, epoch

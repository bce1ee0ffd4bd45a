"""Atomic file writes: every file dlexp writes goes through a temporary file and a rename.

A signal handler that raises (:class:`dlexp.guards.InterruptHandler`) may interrupt a write
anywhere: the steps that create, finish or remove a temporary file run in a
:func:`critical` section, where a signal is acted on only at the section's end, so an
interrupted write leaves the old file and no temporary one. Temporary files that a killed
process (SIGKILL) left behind are removed by :func:`remove_stale_temps` at the next start.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".tmp"

_depth = 0  # how many critical sections are open (in this thread: signals run in the main one)
_deferred: list[Callable[[], None]] = []


@contextmanager
def critical() -> Iterator[None]:
    """A section that a signal does not interrupt: :func:`defer` keeps its action for the end."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _deferred:
            actions = list(_deferred)
            _deferred.clear()
            for action in actions:
                action()  # may raise (the interruption), now that the section is complete


def defer(action: Callable[[], None]) -> bool:
    """Keep ``action`` for the end of the open critical section; False when none is open."""
    if _depth == 0:
        return False
    _deferred.append(action)
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_replace(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_replace(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; then it replaces ``path``.

    The file is flushed to disk and given the usual permissions first; if the block fails
    (or a signal interrupts it), the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        with critical():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
            )
            os.close(fd)
            tmp = Path(name)
        yield tmp
        with critical():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
    except BaseException:
        with critical():
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_replace` under ``directory`` (left by a
    process killed while writing); return them. Call it only while no other process writes
    there."""
    removed = []
    for tmp in directory.rglob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)

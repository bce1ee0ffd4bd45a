"""Bounds on what dlexp takes as input: sizes of a command line, lengths of paths.

Each is checked before the work it would slow down or break: Hydra's parser takes about a
minute for a list of 20,000 items and checking one job of a sweep about 40 ms; a path the
file system cannot hold fails only when the first file is written. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dlexp.errors import InputError, shorten

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

MAX_OVERRIDES = 1000  # overrides on one command line
MAX_ITEMS = 1000  # items of one list or sweep (counted by its commas)
MAX_CHARS = 20_000  # characters of one override
MAX_JOBS = 1000  # jobs of one grid sweep
# Room a run dir needs below it for the longest name dlexp, Hydra and TensorBoard write there
# (a sweep dir: that of a job dir too).
RUN_DIR_ROOM = 200


def check_override_sizes(overrides: list[str]) -> None:
    """Refuse a command line too large to check in seconds (with a message of bounded size)."""
    if len(overrides) > MAX_OVERRIDES:
        raise InputError(
            f"{len(overrides)} overrides: dlexp takes at most {MAX_OVERRIDES} on one command line"
        )
    for line in overrides:
        key = line.split("=", 1)[0]
        if len(line) > MAX_CHARS:
            raise InputError(
                f"{shorten(line)}: {len(line)} characters; an override has at most {MAX_CHARS}"
            )
        if line.count(",") >= MAX_ITEMS:
            raise InputError(
                f"{shorten(line)}: about {line.count(',') + 1} items; a list or sweep of {key} "
                f"has at most {MAX_ITEMS}"
            )


def check_path_length(key: str, directory: str | os.PathLike, room: int = 0) -> Path:
    """``directory`` as an absolute path, or :class:`InputError` where a name in it is longer
    than the file system takes or the path (with ``room`` characters more below it) is."""
    path = Path(directory).expanduser().absolute()
    ancestor = path
    while len(str(ancestor)) >= 4096 or not _exists(ancestor):
        ancestor = ancestor.parent
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
        path_max = os.pathconf(ancestor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    too_long = [part for part in path.parts if len(os.fsencode(part)) > name_max]
    if too_long:
        raise InputError(
            f"{key}={shorten(str(directory))}: a name of {len(os.fsencode(too_long[0]))} bytes "
            f"in this path; the file system takes at most {name_max}"
        )
    size = len(os.fsencode(str(path))) + room
    if size >= path_max:
        more = f" (with {room} for the files below it)" if room else ""
        raise InputError(
            f"{key}={shorten(str(directory))}: a path of {size} bytes{more}; the file system "
            f"takes at most {path_max - 1}"
        )
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to look up
        return False


def check_job_count(parsed: list[Override]) -> None:
    """Refuse a grid of more than :data:`MAX_JOBS` jobs before the jobs are listed."""
    count, exact = 1, True
    for o in parsed:
        if not o.is_sweep_override():
            continue
        try:
            size = sum(1 for _ in zip(o.sweep_string_iterator(), range(MAX_JOBS + 1), strict=False))
        except Exception:  # not a grid sweep (interval()): grid_jobs says so
            continue
        exact = exact and size <= MAX_JOBS
        count *= size
        if count > MAX_JOBS:
            shown = count if exact else f"more than {MAX_JOBS}"
            raise InputError(
                f"sweep: {shown} jobs; one sweep runs at most {MAX_JOBS} "
                "(split it into several sweeps)"
            )

"""One writer per run directory, and no run written over another.

A process that writes a run (or sweep) directory (``dlexp train``, ``resume=``, ``dlexp
eval``, ``dlexp predict`` into the run dir) holds an exclusive ``flock`` on
``<dir>/.dlexp.lock`` for as long as it writes. The file records the holder (PID, command,
host, start time), so a second writer is refused naming it. The kernel drops the lock when
its process ends, however it ends (SIGKILL included): the next writer takes it over and
records itself. The holder removes the file when it is done.

``dlexp train`` into a directory that holds a run, or into any non-empty directory, is refused
unless it continues the run (``resume=``) or ``overwrite=true`` asks for the old contents to
be moved into ``attempts/<n>/`` first. The checks are torch-free and, in ``dlexp train``, run
before any directory is created (:func:`check_output_dir`); the lock is then taken before
Hydra writes its ``.hydra/`` files (:func:`claim_output_dir`). DDP ranks > 0 train in rank
0's directory and write nothing: they neither check nor lock (:func:`process_rank`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlexp.errors import InputError

if TYPE_CHECKING:
    from dlexp.preflight import CheckedCommand

LOCK_NAME = ".dlexp.lock"
# Any of these makes a directory a run: resume=<dir> continues it, overwrite=true archives it.
RUN_FILES = frozenset({"metrics.json", "config.yaml", "checkpoints", "epochs.csv", ".hydra"})
HYDRA_FILES = frozenset({".hydra", "train.log"})  # what Hydra writes before a job starts
SHOWN_COMMAND = 160  # characters of the holder's command shown in a refusal

_held: dict[Path, RunDirLock] = {}  # the directories this process holds, by real path


def process_rank() -> int:
    """This process's global rank as Lightning reads it from the environment (0 when unset).

    Ranks > 0 of a job that a cluster starts (SLURM tasks, ``torchrun``) run the whole
    command line too; rank 0 checks and holds the run dir for all of them.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                return 0
    return 0


class RunDirLock:
    """The exclusive lock this process holds on a directory; :meth:`release` ends it."""

    def __init__(self, directory: Path, fd: int, created: bool) -> None:
        self.directory, self.fd, self.created = directory, fd, created

    def release(self) -> None:
        """Remove the lock file (and the directory, when this lock created it and it stayed
        empty), then unlock."""
        if self.fd < 0:
            return
        _held.pop(self.directory, None)
        try:
            (self.directory / LOCK_NAME).unlink()
            if self.created:
                self.directory.rmdir()  # only when empty: nothing was written after all
        except OSError:
            pass
        os.close(self.fd)  # the kernel drops the flock
        self.fd = -1

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(directory: Path, shown: str, command: str | None = None) -> RunDirLock | None:
    """Lock ``directory`` (created if missing) for this process; None when it holds it already.

    Raises :class:`InputError` (``shown`` leads the message) naming the holder when another
    process holds it, or when the directory cannot be written.
    """
    directory = Path(os.path.realpath(Path(directory).expanduser()))
    if directory in _held:
        return None
    created = not directory.exists()
    path = directory / LOCK_NAME
    busy = 0  # tries that met another holder (a holder that just finished is no obstacle)
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InputError(f"{shown}: cannot write there ({exc.strerror or exc})") from None
        locked = _lock(fd)
        if locked and _same_file(fd, path):
            break
        os.close(fd)
        if locked:
            continue  # the file was unlinked by a holder that just finished: try again at once
        busy += 1
        if busy == 20:
            raise InputError(f"{shown}: {in_use_by(directory)}")
        time.sleep(0.05)
    record = {
        "pid": os.getpid(),
        "command": command or command_line(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    lock = _held[directory] = RunDirLock(directory, fd, created)
    return lock


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder unlinks it)."""
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def holder(directory: Path) -> dict[str, Any] | None:
    """The record of the process that holds ``directory``'s lock; None when none does.

    Probes without writing anything (a shared lock taken and dropped at once).
    """
    directory = Path(os.path.realpath(Path(directory).expanduser()))
    if directory in _held:
        return None
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(directory / LOCK_NAME)
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_record(path: Path) -> dict[str, Any]:
    """The holder's record; it writes it right after locking, so a fresh one may lag."""
    for _ in range(20):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and _alive(record):
            return record
        time.sleep(0.05)
    return {}


def _alive(record: dict[str, Any]) -> bool:
    """False for a record left by a process of this host that is gone (a lagging record)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname():
        return isinstance(pid, int)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def in_use_by(directory: Path) -> str:
    """``in use by PID … (command) …``: the refusal naming the holder of ``directory``."""
    record = holder(directory)
    if not record:
        return "in use by another process (no record of which); wait for it to end"
    command = str(record.get("command", "?"))
    if len(command) > SHOWN_COMMAND:
        command = command[: SHOWN_COMMAND - 1] + "…"
    return (
        f"in use by PID {record.get('pid')} ({command}) on {record.get('host', '?')} since "
        f"{record.get('started', '?')}; wait for it to end or choose another directory"
    )


def command_line() -> str:
    """This process's command, as ``dlexp …`` when it is dlexp."""
    argv = list(sys.argv)
    first = Path(argv[0]) if argv else Path()
    if first.name == "dlexp" or first.parent.name == "dlexp":  # the script, or python -m dlexp
        return shlex.join(["dlexp", *argv[1:]])
    return shlex.join(getattr(sys, "orig_argv", argv))


# -- dlexp train: the run (or sweep) directory the command writes -------------------------------


def contents_problem(directory: Path, *, sweep: bool, ignore: frozenset[str] = frozenset()) -> str:
    """Why ``directory`` cannot take a new run (or sweep): '' when it is missing or empty.

    ``ignore``: names that do not count (Hydra's files in a job dir it has just made).
    """
    try:
        names = sorted({p.name for p in Path(directory).iterdir()} - {LOCK_NAME} - ignore)
    except (FileNotFoundError, NotADirectoryError):
        return ""  # nothing there yet (or a file: preflight.check_writable says so)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not names:
        return ""
    shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
    if sweep:
        what = "holds a sweep" if "multirun.yaml" in names else "is not empty"
        return (
            f"{what} ({shown}); continue a sweep with dlexp resume-sweep {directory}, choose "
            "another hydra.sweep.dir, or give overwrite=true to move its files into "
            "attempts/<n>/ first"
        )
    found = [n for n in names if n in RUN_FILES]
    if found:
        return (
            f"holds a run ({', '.join(found)}); continue it with resume={directory}, choose "
            "another hydra.run.dir, or give overwrite=true to move it into attempts/<n>/ first"
        )
    return (
        f"is not empty and holds no dlexp run ({shown}); choose another hydra.run.dir, or "
        "give overwrite=true to move its files into attempts/<n>/ first"
    )


def _target(checked: CheckedCommand) -> tuple[str, Path, bool, bool]:
    """The key, directory, resume and overwrite of the command ``checked`` describes."""
    key = "hydra.sweep.dir" if checked.multirun else "hydra.run.dir"
    resume = any(c.resume for c in checked.configs)
    overwrite = any(c.overwrite for c in checked.configs)
    return key, Path(checked.output_dir).expanduser().absolute(), resume, overwrite


def check_output_dir(checked: CheckedCommand) -> None:
    """Raise :class:`InputError` when the command may not write its run (or sweep) directory:
    another process holds it, or it holds something that is neither resumed nor overwritten.

    Reads only; :func:`claim_output_dir` checks again under the lock.
    """
    if process_rank() > 0:
        return
    key, directory, resume, overwrite = _target(checked)
    shown = f"{key}={checked.output_dir}"
    if holder(directory) is not None:
        raise InputError(f"{shown}: {in_use_by(directory)}")
    if not (resume or overwrite):
        problem = contents_problem(directory, sweep=checked.multirun)
        if problem:
            raise InputError(f"{shown}: {problem}")


def claim_output_dir(checked: CheckedCommand) -> RunDirLock | None:
    """Lock the command's run (or sweep) directory before Hydra writes into it; with
    ``overwrite=true``, move what it holds into ``attempts/<n>/``. None on ranks > 0."""
    if process_rank() > 0:
        return None
    key, directory, resume, overwrite = _target(checked)
    shown = f"{key}={checked.output_dir}"
    lock = acquire(directory, shown)
    if lock is None or resume:
        return lock
    try:
        problem = contents_problem(directory, sweep=checked.multirun)
        if problem and not overwrite:
            raise InputError(f"{shown}: {problem}")
        if problem:
            from dlexp.resume import archive_attempt

            try:
                archive_attempt(lock.directory, keep={"attempts", LOCK_NAME})
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise InputError(f"{shown}: overwrite=true: cannot archive it ({reason})") from None
    except BaseException:
        lock.release()
        raise
    return lock


def claim_job_dir(job_dir: Path, *, multirun: bool, resume: bool) -> RunDirLock | None:
    """Lock a job's directory (Hydra made it and wrote ``.hydra/``); None when this process
    holds it already (a single run: :func:`claim_output_dir`) or on ranks > 0.

    A new job's directory must hold no run: two jobs of one sweep never share one.
    """
    if process_rank() > 0:
        return None
    shown = f"job dir {job_dir}" if multirun else f"hydra.run.dir={job_dir}"
    lock = acquire(job_dir, shown)
    if lock is None or resume:
        return lock
    problem = contents_problem(job_dir, sweep=False, ignore=HYDRA_FILES)
    if problem:
        lock.release()
        hint = "; does hydra.sweep.subdir give two jobs one directory?" if multirun else ""
        raise InputError(f"{shown}: {problem.split('; ', 1)[0]}{hint}")
    return lock

"""Fault injection with real processes: ``python tests/faults.py <spec.json>`` prints JSON.

One interpreter imports dlexp, torch and Lightning once, then forks a child per run: each
child is a real ``dlexp train`` process that the parent signals (SIGKILL at a moment, or
two SIGINTs some time apart) and then, for kills, resumes in another child. Forking saves
the seconds of imports that every fresh ``python -m dlexp`` pays.

spec: ``{"args": [...], "kills": [[dir, delay], ...]}`` or
``{"args": [...], "double": [[dir, delay, "SIGTERM"], ...]}`` (the second signal after a
first SIGINT); delays in seconds,
counted from the moment the run writes ``metrics.json`` (kills) or from the first signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytorch_lightning  # noqa: F401  (imported once, before the forks)

from dlexp.cli import main


def fork_dlexp(*args: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = main(list(args))
        finally:
            os._exit(code)
    return pid


def wait_until(condition, pid: int, timeout: float = 120) -> bool:
    """Poll ``condition`` until it holds (True) or the child exits (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not get there in time")
        time.sleep(0.002)
    return True


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def kill_then_resume(args: list[str], run: Path, delay: float) -> dict:
    pid = fork_dlexp("train", *args, f"hydra.run.dir={run}")
    alive = wait_until((run / "metrics.json").is_file, pid)
    if alive:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    killed = exit_code(status) == -signal.SIGKILL
    temps = [str(p) for p in run.rglob("*.tmp")]
    at_kill = json.loads((run / "metrics.json").read_text())["status"] if alive else None
    _, status = os.waitpid(fork_dlexp("train", f"resume={run}"), 0)
    return {
        "dir": str(run),
        "killed": killed,
        "status_at_kill": at_kill,
        "temps_at_kill": temps,
        "resume_code": exit_code(status),
    }


def double_signal(args: list[str], run: Path, delay: float, second: int) -> dict:
    pid = fork_dlexp("train", *args, f"hydra.run.dir={run}")
    epochs = run / "epochs.csv"
    wait_until(lambda: epochs.is_file() and len(epochs.read_text().splitlines()) > 1, pid)
    os.kill(pid, signal.SIGINT)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):  # it may have exited already
        os.kill(pid, second)
    _, status = os.waitpid(pid, 0)
    return {"dir": str(run), "delay": delay, "second": second.name, "code": exit_code(status)}


def warm_up(args: list[str]) -> None:
    """Compose the run's config once here: the children inherit Hydra's loaded plugins."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        main(["train", *args, "--cfg", "job"])


def run(spec: dict) -> list[dict]:
    args = spec["args"]
    warm_up(args)
    if "kills" in spec:
        return [kill_then_resume(args, Path(d), delay) for d, delay in spec["kills"]]
    return [double_signal(args, Path(d), t, signal.Signals[sig]) for d, t, sig in spec["double"]]


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))

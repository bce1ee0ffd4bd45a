"""Continuing a run in its own directory (``resume=<run dir>``, ``dlexp resume-sweep``).

A run directory tells what to do from its ``metrics.json``: ``completed`` runs are kept as
they are, ``interrupted`` (or crashed while ``running``) runs continue from
``checkpoints/last.ckpt`` (the end of their last completed epoch), and ``failed`` or
``diverged`` runs start again, their earlier files moved to ``attempts/<n>/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlexp.errors import ConfigError, InputError
from dlexp.io import read_json
from dlexp.rundir import LOCK_NAME

KEEP_ON_RESTART = {".hydra", "train.log", "attempts", LOCK_NAME}


@dataclass
class ResumePlan:
    """What to do with a run directory that may hold an earlier attempt."""

    previous: dict[str, Any] | None = None
    checkpoint: Path | None = None  # continue from here
    epoch: int = 0  # epochs completed in the checkpoint
    global_step: int = 0

    @property
    def skip(self) -> bool:
        return bool(self.previous) and self.previous.get("status") == "completed"


def run_dir_of(value: str) -> Path:
    """``resume=<value>`` as a run directory (with Hydra's ``.hydra/overrides.yaml``)."""
    run_dir = Path(value).expanduser().resolve()
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError("resume", value, "must be a dlexp run directory (with .hydra/)")
    return run_dir


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or None when there is none."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: corrupt metrics.json ({exc})") from None


def plan_resume(run_dir: Path) -> ResumePlan:
    """Decide how to continue ``run_dir``; restarts archive the earlier attempt first."""
    previous = read_record(run_dir)
    if previous is None:
        return ResumePlan()
    plan = ResumePlan(previous=previous)
    last = run_dir / "checkpoints" / "last.ckpt"
    if plan.skip:
        return plan
    if previous.get("status") in ("interrupted", "running") and last.is_file():
        from dlexp.checkpoints import safe_load

        state = safe_load(last, "resume")
        plan.checkpoint, plan.epoch = last, int(state["epoch"]) + 1
        plan.global_step = int(state["global_step"])
        return plan
    archive_attempt(run_dir)
    return ResumePlan(previous=previous)


def archive_attempt(run_dir: Path, keep: set[str] = KEEP_ON_RESTART) -> Path:
    """Move the files of an earlier attempt into ``attempts/<n>/``, but for ``keep`` (by
    default Hydra's files and the run dir's lock stay)."""
    attempts = run_dir / "attempts"
    target = attempts / str(len(list(attempts.glob("*"))) + 1 if attempts.is_dir() else 1)
    target.mkdir(parents=True)
    for item in run_dir.iterdir():
        if item.name not in keep:
            shutil.move(str(item), target / item.name)
    return target

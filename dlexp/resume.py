"""Continuing a run in its own directory (``resume=<run dir>``, ``dlexp resume-sweep``).

A run directory tells what to do from its ``metrics.json``: ``completed`` runs are kept as
they are, ``interrupted`` (or crashed while ``running``) runs continue from
``checkpoints/last.ckpt`` (the end of their last completed epoch), and ``failed`` or
``diverged`` runs start again, their earlier files moved to ``attempts/<n>/``.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlexp.errors import ConfigError, InputError
from dlexp.io import read_json
from dlexp.rundir import LOCK_NAME

KEEP_ON_RESTART = {".hydra", "train.log", "attempts", LOCK_NAME}
STATUSES = ("running", "completed", "failed", "diverged", "interrupted", "pruned")
FINISHED = ("completed", "pruned")  # kept as they are (a pruned Optuna trial is an ending)
# the fields of metrics.json that resume reads, and their types
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "overrides": list,
    "started_at": str,
    "resumed": int,
    "resumes": list,
    "wall_seconds": (int, float),
    "epochs": int,
    "last_completed_epoch": int,
    "stopped": dict,
}


@dataclass
class ResumePlan:
    """What to do with a run directory that may hold an earlier attempt."""

    previous: dict[str, Any] | None = None
    checkpoint: Path | None = None  # continue from here
    epoch: int = 0  # epochs completed in the checkpoint
    global_step: int = 0

    @property
    def skip(self) -> bool:
        """A completed (or pruned) run that is not being extended (more epochs): kept as
        it is."""
        finished = bool(self.previous) and self.previous.get("status") in FINISHED
        return finished and self.checkpoint is None


def run_dir_of(value: str) -> Path:
    """``resume=<value>`` as a run directory (with Hydra's ``.hydra/overrides.yaml``)."""
    run_dir = Path(value).expanduser().resolve()
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError("resume", value, "must be a dlexp run directory (with .hydra/)")
    return run_dir


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or None when there is none; one that is not a dlexp run
    record (corrupt JSON, or JSON of another shape) is an :class:`InputError`."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: corrupt metrics.json ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: not a dlexp run record (a JSON object)")
    if record.get("status") not in STATUSES:
        raise InputError(
            f"{path}: not a dlexp run record (status must be one of: {', '.join(STATUSES)})"
        )
    for key, kind in RECORD_FIELDS.items():
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise InputError(f"{path}: not a dlexp run record ({key}: {value!r})")
    return record


def read_epoch_rows(path: Path, up_to_epoch: int | None = None) -> list[dict[str, Any]]:
    """The rows of a run's ``epochs.csv`` (epochs 1, 2, … as numbers), up to ``up_to_epoch``;
    a malformed file is an :class:`InputError` naming the line."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "epoch" not in reader.fieldnames:
                raise ValueError("no epoch column")
            for line, raw in enumerate(reader, start=2):
                if None in raw or None in raw.values():
                    raise ValueError(f"line {line}: not {len(reader.fieldnames)} fields")
                row: dict[str, Any] = {k: float(v) for k, v in raw.items() if v}
                if row.get("epoch") != len(rows) + 1:
                    raise ValueError(
                        f"line {line}: epoch {raw['epoch']!r}, expected {len(rows) + 1}"
                    )
                row["epoch"] = len(rows) + 1
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise InputError(f"{path}: malformed epochs.csv ({exc})") from None
    return [r for r in rows if up_to_epoch is None or r["epoch"] <= up_to_epoch]


def plan_resume(run_dir: Path, extend: bool = False) -> ResumePlan:
    """Decide how to continue ``run_dir``; restarts archive the earlier attempt first.

    ``extend``: continue a completed run from its last checkpoint (it gets more epochs).
    """
    previous = read_record(run_dir)
    if previous is None:
        return ResumePlan()
    plan = ResumePlan(previous=previous)
    last = run_dir / "checkpoints" / "last.ckpt"
    status = previous.get("status")
    if status == "pruned" or (status == "completed" and not (extend and last.is_file())):
        return plan
    if status in ("interrupted", "running", "completed") and last.is_file():
        from dlexp.checkpoints import safe_load

        state = safe_load(last, "resume")
        if not isinstance(state, dict) or not {"epoch", "global_step"} <= state.keys():
            raise InputError(f"{last}: not a Lightning checkpoint (no epoch and global_step)")
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

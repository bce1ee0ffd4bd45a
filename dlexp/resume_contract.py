"""What may change when a run is resumed (``dlexp train resume=<run dir> [overrides]``).

The config composed for the resume is compared, key by key, with the run's saved
``config.yaml``: a change of one of :data:`RESUME_OVERRIDES` is applied and recorded in
``metrics.json`` (``resumes: [{"at_epoch": 3, "changed": {"trainer.max_epochs": [4, 6]}}]``);
any other change is refused up front, before anything is written, with the list of the
keys that may change. More epochs (``trainer.max_epochs``) continue an interrupted run, or a
completed one that stopped at its ``max_epochs``; a schedule sized by the run's total steps
(``onecycle``, ``cosine``) is rebuilt for the new length (see :mod:`dlexp.resized_schedule`).
Imports neither torch nor Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlexp.config import Config, flat_config
from dlexp.errors import InputError
from dlexp.resume import read_epoch_rows, read_record

# How the run continues, never what it computes: its length, where it runs, where its data
# lies (the same files), how it logs, how its final test scores the best checkpoint (test.*:
# test-time augmentation, applied once, at the end). A node name (logger) stands for all its
# keys.
RESUME_OVERRIDES = (
    "trainer.max_epochs",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.root",
    "data.download",
    "data.num_workers",
    "logger",
    "test",
    "verbose",
)
SHOWN = 4  # changed keys named in a refusal


def flat(config: Config) -> dict[str, Any]:
    """``config`` as ``{"dotted.key": value}``, ``resume`` left out."""
    out = flat_config(config)
    out.pop("resume", None)
    return out


def changed_keys(saved: Config, new: Config) -> dict[str, list]:
    """The keys whose values differ, each ``[saved, new]`` (None: absent on that side)."""
    before, after = flat(saved), flat(new)
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


def _allowed(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_OVERRIDES)


def resume_changes(run_dir: Path, config: Config) -> dict[str, list]:
    """The changes ``config`` makes to the run in ``run_dir``, checked against its state.

    Raises :class:`InputError` for a key that may not change on resume, for fewer epochs
    than the run has completed, or for a change a completed run cannot take.
    """
    if not (run_dir / "config.yaml").is_file():
        return {}  # nothing ran there yet: a fresh start
    from dlexp.run_config import saved_config

    record = read_record(run_dir)
    changes = changed_keys(saved_config(run_dir), config)
    refused = [k for k in changes if not _allowed(k)]
    if refused:
        first = refused[0]  # its values; the others by name (the line stays short)
        shown = ", ".join([f"{first} ({_show(*changes[first])})", *refused[1:SHOWN]])
        more = f" (+{len(refused) - SHOWN} more)" if len(refused) > SHOWN else ""
        raise InputError(
            f"resume={run_dir}: a resume cannot change {shown}{more}; it may change: "
            + ", ".join(RESUME_OVERRIDES)
        )
    status = record.get("status") if record else None
    if status not in ("interrupted", "running", "completed"):
        return changes  # failed, diverged or never recorded: the run starts again
    done = _epochs_done(run_dir, record)
    epochs = changes.get("trainer.max_epochs")
    if epochs and epochs[1] < done:
        raise InputError(
            f"trainer.max_epochs={epochs[1]}: must be >= {done}, the epochs the run in "
            f"{run_dir} has completed"
        )
    if status == "completed" and changes:
        _check_extension(run_dir, record, changes, done)
    return changes


def _epochs_done(run_dir: Path, record: dict) -> int:
    path = run_dir / "epochs.csv"
    rows = read_epoch_rows(path) if path.is_file() else []  # checked here, read by the run
    return int(record.get("last_completed_epoch") or record.get("epochs") or len(rows))


def _check_extension(run_dir: Path, record: dict, changes: dict[str, list], done: int) -> None:
    """A completed run continues only for more epochs, from its last checkpoint."""
    epochs = changes.get("trainer.max_epochs")
    stopped = record.get("stopped") or {}
    why = ""
    if not epochs or epochs[1] <= done:
        why = f"give trainer.max_epochs > {done} to train it further"
    elif stopped.get("by") not in (None, "max_epochs"):
        why = f"it stopped by {stopped.get('by')} ({stopped.get('reason')}), not at max_epochs"
    elif not (run_dir / "checkpoints" / "last.ckpt").is_file():
        why = "it has no checkpoints/last.ckpt to continue from"
    if why:
        listed = ", ".join(f"{k}={v[1]}" for k, v in changes.items())
        raise InputError(f"resume={run_dir}: the run is completed; {listed} not applied: {why}")


def _show(old: Any, new: Any) -> str:
    return f"{_value(old)} -> {_value(new)}"


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_resume_command(configs: list[Config], *, multirun: bool) -> None:
    """``dlexp train resume=<run dir> …``: refuse, before Hydra writes anything, the
    overrides the run cannot take (``resume=auto`` jobs are checked as each starts)."""
    if multirun or len(configs) != 1 or configs[0].resume in (None, "auto"):
        return
    resume_changes(Path(configs[0].resume), configs[0])

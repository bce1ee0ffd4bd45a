"""Reading finished runs back: run directories, their overrides and metrics."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlexp.errors import InputError

# Overrides that name where a run goes or how it talks, not what it is.
_NOT_A_FACTOR = ("hydra.", "resume", "trainer.enable_progress_bar", "trainer.enable_model_summary")


_RECORD_KEYS = {"epochs": "epochs", "wall_s": "wall_seconds"}


@dataclass
class Run:
    """One run directory as read back from disk."""

    path: Path
    metrics: dict[str, Any]
    overrides: dict[str, str]
    epochs: list[dict[str, float]] = field(default_factory=list)
    # layer name -> mean |grad| over the first epoch(s) (``gradient_flow.json``), input first
    gradient_flow: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.metrics.get("status", "missing")

    def value(self, metric: str) -> float | None:
        """A final metric of the run (None when it has none).

        ``test/…`` from the test, ``val/…`` at the best epoch, ``train/…`` at the last epoch,
        ``gap``: train/acc - val/acc at the last epoch (the overfitting gap), ``epochs``
        (epochs trained) and ``wall_s`` (seconds).
        """
        if metric in _RECORD_KEYS:
            value = self.metrics.get(_RECORD_KEYS[metric])
        elif metric == "gap":
            last = self.epochs[-1] if self.epochs else {}
            both = "train/acc" in last and "val/acc" in last
            value = last["train/acc"] - last["val/acc"] if both else None
        elif metric.startswith("train/"):
            value = self.epochs[-1].get(metric) if self.epochs else None
        else:
            section = "test" if metric.startswith("test/") else "best"
            value = self.metrics.get(section, {}).get(metric)
        return None if value is None else float(value)

    def epochs_to(self, target: float, metric: str = "val/acc") -> int | None:
        """The first epoch at which ``metric`` reached ``target`` (None: never)."""
        for row in self.epochs:
            if row.get(metric, float("-inf")) >= target:
                return int(row["epoch"])
        return None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``["model=mlp", "+x=1", "~y"]`` -> ``{"model": "mlp", "x": "1", "~y": ""}``."""
    parsed = {}
    for line in lines:
        key, _, value = line.partition("=")
        key = key.lstrip("+") if not key.startswith("~") else key
        if not key.startswith(_NOT_A_FACTOR):
            parsed[key] = value
    return parsed


def read_run(path: Path) -> Run:
    """Read ``metrics.json`` (or Hydra's overrides when the job died early) and ``epochs.csv``.

    A file that is not what dlexp writes (malformed, or valid JSON of another shape) is an
    :class:`InputError` naming it.
    """
    metrics: dict[str, Any] = {}
    if (path / "metrics.json").is_file():
        metrics = _read_record(path / "metrics.json")
    overrides = metrics.get("overrides")
    if overrides is None:
        overrides = _hydra_overrides(path)
    epochs = _read_epochs(path / "epochs.csv") if (path / "epochs.csv").is_file() else []
    flow = path / "gradient_flow.json"
    gradients = _read_gradient_flow(flow) if flow.is_file() else {}
    return Run(path, metrics, parse_overrides(overrides), epochs, gradients)


# The fields of metrics.json a report reads, and the JSON types each may have.
_NUMBER = (int, float)
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "overrides": (list,),
    "test": (dict,),
    "best": (dict,),
    "epochs": _NUMBER,
    "best_epoch": _NUMBER,
    "wall_seconds": _NUMBER,
    "num_params": _NUMBER,
    "macs_per_image": _NUMBER,
    "throughput": (dict,),
}


def _read_record(file: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: not a dlexp run record (malformed JSON: {exc})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("status"), str):
        found = type(metrics).__name__ if not isinstance(metrics, dict) else "no status"
        raise InputError(f"{file}: not a dlexp run record (a JSON object with a status); {found}")
    for key, types in _RECORD_FIELDS.items():
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise InputError(f"{file}: {key} is a {type(value).__name__}, not a dlexp record's")
    if not all(isinstance(o, str) for o in metrics.get("overrides") or []):
        raise InputError(f"{file}: overrides must be a list of strings")
    for section in ("test", "best"):
        values = (metrics.get(section) or {}).values()
        if not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in values):
            raise InputError(f"{file}: {section} must map metric names to numbers")
    return metrics


def _read_epochs(file: Path) -> list[dict[str, float]]:
    """The rows of ``epochs.csv`` as numbers; a row that is not is an :class:`InputError`."""
    try:
        with open(file, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{file}: not a dlexp epochs.csv ({exc})") from None
    if rows and "epoch" not in columns:
        raise InputError(f"{file}: not a dlexp epochs.csv (no epoch column)")
    epochs = []
    for line, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            raise InputError(f"{file}: line {line} has {len(columns)} columns expected")
        try:
            epochs.append({k: float(v) for k, v in row.items() if v != ""})
        except ValueError as exc:
            raise InputError(f"{file}: line {line}: {exc}") from None
        if "epoch" not in epochs[-1] or not math.isfinite(epochs[-1]["epoch"]):
            raise InputError(f"{file}: line {line}: no epoch number")
    return epochs


def _read_gradient_flow(file: Path) -> dict[str, float]:
    """``gradient_flow.json`` (:class:`dlexp.inspect.gradient_flow.GradientFlow`) as
    ``{layer: mean |grad|}``; a file of another shape is an :class:`InputError`."""
    try:
        layers = json.loads(file.read_text(encoding="utf-8")).get("layers")
        flow = {layer["name"]: float(layer["mean_abs_grad"]) for layer in layers}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError,
            ValueError) as exc:  # fmt: skip
        raise InputError(f"{file}: not a dlexp gradient_flow.json ({exc})") from None
    return flow


def _hydra_overrides(path: Path) -> list[str]:
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    import yaml

    try:
        overrides = yaml.safe_load(file.read_text(encoding="utf-8")) or []
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: malformed YAML ({_first_line(exc)})") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise InputError(f"{file}: not a list of override strings")
    return overrides


def _first_line(exc: Exception) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def find_runs(paths: list[Path]) -> list[Run]:
    """Runs under each path: a run dir itself, or a sweep dir holding numbered job dirs."""
    runs: list[Run] = []
    for path in paths:
        if not path.is_dir():
            raise InputError(f"{path}: no such directory (give a sweep dir or run dirs)")
        if _is_run(path):
            runs.append(read_run(path))
            continue
        jobs = sorted(
            (p for p in path.iterdir() if p.is_dir() and _is_run(p)),
            key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
        )
        if not jobs:
            raise InputError(f"{path}: holds no runs (no metrics.json and no job directories)")
        runs.extend(read_run(p) for p in jobs)
    return runs


def _is_run(path: Path) -> bool:
    return (path / "metrics.json").is_file() or (path / ".hydra").is_dir()


def varying_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys]
    return [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]

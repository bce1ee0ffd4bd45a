"""``summary.csv`` / ``summary.md``: one row per job of a sweep, and the console table."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from dlexp.io import atomic_write_text
from dlexp.reports.runs import Run, varying_keys

# val/* at the best epoch, test/* of the best checkpoint, train/* and gap (train/acc - val/acc)
# at the last epoch: see :meth:`Run.value`.
METRIC_COLUMNS = (
    "val/acc",
    "val/loss",
    "test/acc",
    "test/f1",
    "test/loss",
    "train/acc",
    "train/loss",
    "gap",
)


# How a job ended, in the order the counts are shown; any other status is counted by its name.
ENDINGS = ("pruned", "diverged", "failed", "interrupted", "bad_input")


def count_statuses(statuses: list[str]) -> str:
    """``"1 of 4 completed, 2 diverged, 1 failed"``: every way a job ended, counted apart
    (``pruned``: an Optuna trial its pruner stopped early)."""
    counts: dict[str, int] = {}
    for status in statuses:
        if status != "completed":
            counts[status] = counts.get(status, 0) + 1
    order = [*ENDINGS, *sorted(set(counts) - set(ENDINGS))]
    done = len(statuses) - sum(counts.values())
    parts = [f"{done} of {len(statuses)} completed"]
    parts += [f"{counts[s]} {s}" for s in order if counts.get(s)]
    return ", ".join(parts)


def summary_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Rows of the summary: job, the varying overrides, status, metrics, epochs, seconds."""
    factors = varying_keys(runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"job": run.path.name}
        row.update({k: run.overrides.get(k, "") for k in factors})
        row["status"] = run.status
        for metric in METRIC_COLUMNS:
            row[metric] = run.value(metric)
        row["epochs"] = run.metrics.get("epochs")
        row["best_epoch"] = run.metrics.get("best_epoch")
        row["wall_s"] = run.metrics.get("wall_seconds")
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A GitHub-flavoured markdown table of ``rows``."""
    if not rows:
        return "_no rows_\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(runs: list[Run], out_dir: Path) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.md`` into ``out_dir``; return the rows."""
    rows = summary_rows(runs)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: _cell(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        )
    atomic_write_text(out_dir / "summary.csv", buffer.getvalue())
    header = f"# Sweep summary\n\n{count_statuses([r['status'] for r in rows])}"
    atomic_write_text(out_dir / "summary.md", f"{header}.\n\n{markdown_table(rows)}")
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The summary as a rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0] if rows else []:
        table.add_column(column, justify="right" if column not in ("job", "status") else "left")
    for row in rows:
        style = {"completed": None, "pruned": "yellow"}.get(row["status"], "red")
        table.add_row(*(_cell(v) for v in row.values()), style=style)
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)  # logs and pipes: do not squeeze the columns
    console.print(table)

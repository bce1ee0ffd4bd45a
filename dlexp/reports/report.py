"""``dlexp report``: the answer of a sweep as tables and plots, readable without TensorBoard.

Replicates (runs that differ only in ``seed`` and ``data.fold``: seeds, cross-validation
folds, or folds x seeds) are grouped into mean ± std (and n).
Writes into the output dir: ``summary.csv``/``summary.md`` (one row per run), ``groups.csv``,
``learning_curves.png``, ``final_metric.png``, ``heatmap.png`` (for a two-factor grid),
``architectures.png``/``.csv`` (for configurations of different cost: see
:mod:`dlexp.reports.architecture`), ``gradient_flow.png`` (for runs that recorded it) and
``report.md`` embedding them.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from dlexp.io import atomic_write_text
from dlexp.reports.architecture import write_architecture_report
from dlexp.reports.runs import Run, find_runs, varying_keys
from dlexp.reports.summary import METRIC_COLUMNS, markdown_table, print_table, write_summary

REPLICATE_KEYS = ("seed", "data.fold")  # replicates: mean ± std over them


@dataclass
class Group:
    """Runs of one configuration (all factors equal but the seed and the fold)."""

    factors: dict[str, str]
    runs: list[Run]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.factors.items()) or "all runs"

    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "completed"]

    def stats(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, n) of ``metric`` over the completed runs; std is 0 for n = 1."""
        values = [v for r in self.completed() if (v := r.value(metric)) is not None]
        if not values:
            return math.nan, math.nan, 0
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std, len(values)

    def epochs_to(self, target: float) -> str:
        """First epoch with val/acc >= ``target``: mean ± std, and how many runs got there."""
        reached = [e for r in self.completed() if (e := r.epochs_to(target)) is not None]
        if not reached:
            return "never"
        std = statistics.stdev(reached) if len(reached) > 1 else 0.0
        text = f"{statistics.fmean(reached):.1f} ± {std:.1f}"
        n = len(self.completed())
        return text if len(reached) == n else f"{text} ({len(reached)}/{n} runs)"


def group_runs(runs: list[Run]) -> tuple[list[str], list[Group]]:
    """The factors of the sweep (varying keys but seed and fold) and the runs grouped by them."""
    factors = [k for k in varying_keys(runs) if k not in REPLICATE_KEYS]
    groups: dict[tuple, Group] = {}
    for run in runs:
        values = {k: run.overrides.get(k, "") for k in factors}
        groups.setdefault(tuple(values.values()), Group(values, [])).runs.append(run)
    return factors, list(groups.values())


def group_rows(groups: list[Group], target: float | None = None) -> list[dict[str, object]]:
    """One row per configuration: mean ± std of every metric, epochs and seconds.

    With ``target``, an ``epochs_to_<target>`` column: the first epoch with val/acc >= target.
    """
    rows = []
    for g in groups:
        row: dict[str, object] = dict(g.factors) or {"config": "all runs"}
        row["n"] = len(g.completed())
        row["failed"] = len(g.runs) - len(g.completed())
        for metric in (*METRIC_COLUMNS, "epochs", "wall_s"):
            mean, std, n = g.stats(metric)
            digits = 4 if metric in METRIC_COLUMNS else 1
            row[metric] = "" if n == 0 else f"{mean:.{digits}f} ± {std:.{digits}f}"
        if target is not None:
            row[f"epochs_to_{target:g}"] = g.epochs_to(target)
        rows.append(row)
    return rows


def new_report_dir(root: Path = Path("outputs") / "reports") -> Path:
    """A fresh ``outputs/reports/<date>_<time>_<id>`` for a report over several paths."""
    from dlexp.config.root import fresh_id

    return root / fresh_id()


def build_report(
    paths: list[Path],
    out_dir: Path | None = None,
    metric: str = "test/acc",
    target: float | None = None,
) -> Path:
    """Write the report for the runs under ``paths``; return the path of ``report.md``.

    ``target``: also report the first epoch at which val/acc reached it (speed of training).
    """
    runs = find_runs(paths)
    if out_dir is None:
        out_dir = paths[0] if len(paths) == 1 and paths[0].is_dir() else new_report_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = write_summary(runs, out_dir)
    print_table(rows, f"{len(runs)} runs")
    factors, groups = group_runs(runs)
    table = group_rows(groups, target)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out_dir / "groups.csv", buffer.getvalue())

    from dlexp.reports import plots

    images = [
        plots.learning_curves(groups, out_dir / "learning_curves.png"),
        plots.final_metric(groups, metric, out_dir / "final_metric.png"),
        plots.gradient_flow(groups, out_dir / "gradient_flow.png"),
    ]
    if len(factors) == 2:
        images.append(plots.heatmap(groups, factors, metric, out_dir / "heatmap.png"))
    best = max(
        (g for g in groups if g.stats(metric)[2]), key=lambda g: g.stats(metric)[0], default=None
    )
    lines = [
        "# Sweep report",
        "",
        f"{len(runs)} runs in {len(groups)} configurations"
        + (f", varying {', '.join(factors)}" if factors else "")
        + ".",
    ]
    if best is not None:
        mean, std, n = best.stats(metric)
        lines += ["", f"**Best {metric}: {best.label}** — {mean:.4f} ± {std:.4f} (n={n})."]
    lines += ["", "## Configurations (mean ± std over seeds and folds)", "", markdown_table(table)]
    lines += [
        "val/* at the best epoch, test/* of its checkpoint, train/* at the last epoch;"
        " gap = train/acc - val/acc at the last epoch"
        + (
            f"; epochs_to_{target:g}: the first epoch with val/acc >= {target:g}."
            if target is not None
            else "."
        )
        + "\n"
    ]
    lines += [f"![{p.stem}]({p.name})\n" for p in images if p is not None]
    lines += write_architecture_report(groups, metric, out_dir)  # when the sweep's costs differ
    from dlexp.reports.optuna_report import optuna_sections

    lines += optuna_sections(paths, out_dir)  # a sweep of the Optuna sweeper: its study
    lines += ["## Runs", "", markdown_table(rows)]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines))

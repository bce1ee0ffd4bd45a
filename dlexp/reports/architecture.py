"""How to choose an architecture: accuracy against operations, marker area = parameters.

For a sweep whose configurations differ in cost (``model=mlp,lenet5,resnet20``, widths,
depths), the report adds ``architectures.png`` (one point per configuration: the metric's
mean ± std over seeds against MACs per image, the marker's area proportional to the
parameters) and ``architectures.csv`` (the plotted numbers, with wall seconds and training
images/s). Every number is read from the runs' ``metrics.json``: ``macs_per_image``,
``num_params``, ``wall_seconds`` and ``throughput.images_per_s``, recorded at training time.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from dlexp.io import atomic_write_text
from dlexp.reports.summary import markdown_table

LARGEST_MARKER = 2000.0  # area in pt² of the configuration with the most parameters


@dataclass
class ArchPoint:
    """One configuration of the chart: its mean ± std metric and its costs."""

    config: str
    n: int
    mean: float
    std: float
    macs: int
    params: int
    wall_s: float
    wall_s_std: float
    images_per_s: float
    images_per_s_std: float
    marker_area: float = 0.0


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _images_per_s(run) -> float | None:
    rate = (run.metrics.get("throughput") or {}).get("images_per_s")
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None


def architecture_points(groups, metric: str) -> list[ArchPoint]:
    """One point per configuration with a completed run that recorded its MACs; empty when
    the configurations do not differ in MACs or parameters (not an architecture sweep)."""
    points = []
    for group in groups:
        runs = [r for r in group.completed() if r.metrics.get("macs_per_image") is not None]
        values = [v for r in runs if (v := r.value(metric)) is not None]
        if not values:
            continue
        mean, std = _mean_std(values)
        wall, wall_std = _mean_std([v for r in runs if (v := r.value("wall_s")) is not None])
        rate, rate_std = _mean_std([v for r in runs if (v := _images_per_s(r)) is not None])
        points.append(
            ArchPoint(
                config=", ".join(group.factors.values()) or "all runs",
                n=len(values),
                mean=mean,
                std=std,
                macs=int(runs[0].metrics["macs_per_image"]),
                params=int(runs[0].metrics.get("num_params") or 0),
                wall_s=wall,
                wall_s_std=wall_std,
                images_per_s=rate,
                images_per_s_std=rate_std,
            )
        )
    if len({(p.macs, p.params) for p in points}) < 2:
        return []
    largest = max(p.params for p in points) or 1
    for p in points:
        p.marker_area = LARGEST_MARKER * p.params / largest
    return points


def bubble_figure(points: list[ArchPoint], metric: str):
    """The chart as a matplotlib Figure: ``metric`` against MACs, marker area ∝ parameters."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    from dlexp.models.table import si_count

    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    x = [p.macs for p in points]
    y = [p.mean for p in points]
    colors = [f"C{i % 10}" for i in range(len(points))]
    ax.scatter(x, y, s=[p.marker_area for p in points], c=colors, alpha=0.45, edgecolors="k")
    ax.errorbar(x, y, yerr=[p.std for p in points], fmt="none", ecolor="k", capsize=4)
    for p in points:
        text = f"{p.config}\n{si_count(p.params)} params"
        ax.annotate(text, (p.macs, p.mean), xytext=(8, 6), textcoords="offset points", fontsize=8)
    if max(x) > 10 * max(min(x), 1):
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter())  # 250 k, 31 M
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("multiply-accumulates per image (MACs)")
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{metric} against operations; marker area proportional to parameters")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_architecture_report(groups, metric: str, out_dir: Path) -> list[str]:
    """Write ``architectures.csv`` and ``architectures.png``; return report.md's section
    (no lines, no files when the sweep does not compare architectures)."""
    points = architecture_points(groups, metric)
    if not points:
        return []
    buffer = io.StringIO()
    columns = list(asdict(points[0]))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(p) for p in points)
    atomic_write_text(out_dir / "architectures.csv", buffer.getvalue())
    from dlexp.reports.plots import _save  # (imports matplotlib, headless)

    _save(bubble_figure(points, metric), out_dir / "architectures.png")
    rows = [
        {
            "configuration": p.config,
            "n": p.n,
            metric: f"{p.mean:.4f} ± {p.std:.4f}",
            "MACs/image": f"{p.macs:,}",
            "params": f"{p.params:,}",
            "wall_s": f"{p.wall_s:.1f} ± {p.wall_s_std:.1f}",
            "train images/s": f"{p.images_per_s:.0f} ± {p.images_per_s_std:.0f}",
        }
        for p in points
    ]
    return [
        "## Architectures: accuracy against operations",
        "",
        markdown_table(rows),
        "MACs: multiply-accumulates of one image; images/s: training images per second of the"
        " training epochs (validation excluded); wall_s: the whole run. Marker area in the"
        " chart is proportional to the parameters.\n",
        "![architectures](architectures.png)\n",
    ]

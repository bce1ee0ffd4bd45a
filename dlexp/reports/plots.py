"""The report's PNG plots (matplotlib, headless)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dlexp.io import atomic_write_bytes

DPI = 100


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _mean_curve(runs, key: str) -> list[float]:
    """Per-epoch mean of ``key`` over runs, up to the shortest run."""
    curves = [[row[key] for row in r.epochs if key in row] for r in runs]
    curves = [c for c in curves if c]
    if not curves:
        return []
    length = min(len(c) for c in curves)
    return [sum(c[i] for c in curves) / len(curves) for i in range(length)]


def learning_curves(groups, path: Path) -> Path:
    """Validation accuracy and loss per epoch, one line per configuration (mean over seeds)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, ax in zip(("val/acc", "val/loss"), axes, strict=True):
        for g in groups:
            curve = _mean_curve(g.completed(), key)
            if curve:
                ax.plot(range(1, len(curve) + 1), curve, marker=".", label=g.label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Learning curves (validation)")
    fig.tight_layout()
    return _save(fig, path)


def final_metric(groups, metric: str, path: Path) -> Path:
    """A bar per configuration: mean of ``metric`` with ±std error bars."""
    stats = [g.stats(metric) for g in groups]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) + 2), 4.5))
    means = [0 if math.isnan(m) else m for m, _, _ in stats]
    ax.bar(range(len(groups)), means, yerr=[s for _, s, _ in stats], capsize=4, color="tab:blue")
    ax.set_xticks(
        range(len(groups)), [g.label for g in groups], rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel(metric)
    lo = min((m - s for m, s, n in stats if n), default=0)
    ax.set_ylim(max(0.0, lo - 0.05) if metric.endswith(("acc", "f1")) else 0, None)
    ax.set_title(f"{metric} per configuration (mean ± std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


def gradient_flow(groups, path: Path) -> Path | None:
    """Mean |grad| per layer over the first epoch (log scale), one line per configuration
    (mean over its seeds); None when no run recorded it (``callbacks=gradient_flow``)."""
    lines = []
    for g in groups:
        flows = [r.gradient_flow for r in g.completed() if r.gradient_flow]
        if flows:
            layers = list(flows[0])
            means = [sum(f.get(k, math.nan) for f in flows) / len(flows) for k in layers]
            lines.append((g.label, layers, means))
    if not lines:
        return None
    layers = max((layers for _, layers, _ in lines), key=len)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers) + 2), 4.5))
    for label, names, means in lines:
        ax.plot([layers.index(n) for n in names], means, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("mean |gradient| of the weights")
    ax.set_title("Gradient flow over the first epoch (mean over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(groups, factors: list[str], metric: str, path: Path) -> Path:
    """Mean ``metric`` over a two-factor grid."""
    rows = sorted({g.factors[factors[0]] for g in groups}, key=_natural)
    cols = sorted({g.factors[factors[1]] for g in groups}, key=_natural)
    grid = [[math.nan] * len(cols) for _ in rows]
    for g in groups:
        grid[rows.index(g.factors[factors[0]])][cols.index(g.factors[factors[1]])] = g.stats(
            metric
        )[0]
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(cols), 1.5 + 0.8 * len(rows)))
    image = ax.imshow(grid, cmap="viridis")
    finite = [v for row in grid for v in row if not math.isnan(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(factors[1])
    ax.set_ylabel(factors[0])
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(
                    j,
                    i,
                    f"{value:.3f}",
                    ha="center",
                    va="center",
                    color="black" if value > middle else "white",
                )
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(metric)
    fig.tight_layout()
    return _save(fig, path)


def _natural(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)

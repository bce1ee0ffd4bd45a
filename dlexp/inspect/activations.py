"""``dlexp inspect activations``: every ``model.activation`` and its derivative on one figure."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from dlexp.config.model_base import ACTIVATIONS
from dlexp.io import atomic_write_bytes

RANGE = (-5.0, 5.0)  # the inputs plotted
POINTS = 801
# the curves that coincide for x > 0 (relu, leaky_relu, elu) stay apart by their dashes
DASHES = {"leaky_relu": "--", "elu": "-."}


def activation_curves(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every activation option's ``(f(x), f'(x))``: the layer the models build for it
    (:data:`dlexp.models.layers.ACTIVATIONS`, default arguments), differentiated by autograd."""
    from dlexp.models.layers import ACTIVATIONS as LAYERS

    curves = {}
    for name in ACTIVATIONS:
        inputs = x.detach().clone().requires_grad_(True)
        y = LAYERS[name]()(inputs)
        (slope,) = torch.autograd.grad(y.sum(), inputs)
        curves[name] = (y.detach(), slope)
    return curves


def activations_figure(path: Path) -> Path:
    """The curves of :func:`activation_curves` over :data:`RANGE`: the functions on the
    left, their derivatives on the right; written as PNG to ``path``."""
    from matplotlib.figure import Figure

    x = torch.linspace(*RANGE, POINTS, dtype=torch.float64)
    fig = Figure(figsize=(11, 4.5), dpi=80)
    left, right = fig.subplots(1, 2)
    for name, (y, slope) in activation_curves(x).items():
        style = {"label": name, "linewidth": 1.8, "linestyle": DASHES.get(name, "-")}
        left.plot(x, y, **style)
        right.plot(x, slope, **style)
    left.set(title="activation f(x)", xlabel="x", ylim=(-1.5, 3))
    right.set(title="derivative f'(x) (autograd)", xlabel="x", ylim=(-0.2, 1.3))
    right.axhline(0.25, color="gray", linestyle=":", linewidth=1)
    right.annotate("sigmoid's maximum, 1/4", (RANGE[0] + 0.2, 0.28), fontsize=8, color="gray")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axvline(0, color="black", linewidth=0.6)
    left.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())

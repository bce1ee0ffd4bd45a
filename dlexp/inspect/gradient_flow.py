"""Gradient flow: the mean |gradient| reaching each layer's weights over the first epochs.

Saturating activations (sigmoid: a derivative of at most 1/4) shrink the gradient at every
layer it flows back through, so the first layers of a deep sigmoid network learn slowest;
``dlexp report`` plots the recorded values per layer (``gradient_flow.png``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from dlexp.io import atomic_write_text

FILE = "gradient_flow.json"


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weights of the model's convolutions and linear layers, in their order."""
    return [
        (name, module.weight)
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.requires_grad
    ]


class GradientFlow(pl.Callback):
    """Mean |grad| of each layer's weights, averaged over the optimizer steps of the first
    ``epochs`` epochs, written to ``<run dir>/gradient_flow.json`` as ``{"epochs", "steps",
    "layers": [{"name", "mean_abs_grad"}, ...]}`` (input to output) after each of them.

    Read before each optimizer step (after AMP's unscaling, before gradient clipping); the
    sums stay on the device until the epoch ends.
    """

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs
        self.layers: list[tuple[str, nn.Parameter]] = []
        self.sums: torch.Tensor | None = None
        self.steps = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.layers = weighted_layers(pl_module.model)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.current_epoch >= self.epochs or not self.layers:
            return
        means = torch.stack(
            [
                p.grad.detach().abs().mean() if p.grad is not None else p.new_zeros(())
                for _, p in self.layers
            ]
        ).float()
        self.sums = means if self.sums is None else self.sums + means
        self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch >= self.epochs or self.sums is None:
            return
        if trainer.is_global_zero:  # gradients are already averaged over DDP processes
            self.write(Path(trainer.default_root_dir) / FILE, trainer.current_epoch + 1)

    def write(self, path: Path, epochs: int) -> Path:
        """The means over the ``epochs`` recorded so far (a run shorter than ``epochs``
        keeps those of all its epochs)."""
        means = (self.sums / self.steps).tolist()
        record = {
            "epochs": epochs,
            "steps": self.steps,
            "layers": [
                {"name": name, "mean_abs_grad": value}
                for (name, _), value in zip(self.layers, means, strict=True)
            ],
        }
        return atomic_write_text(path, json.dumps(record, indent=1) + "\n")

"""The training loss (``loss.*``): cross-entropy with optional label smoothing.

Targets are either class indices (``N``) or class probabilities (``N x C``, the soft
targets of mixup/cutmix); :func:`torch.nn.functional.cross_entropy` handles both, with
label smoothing applied on top. Validation and test losses are the plain cross-entropy
(the model's negative log-likelihood), so ``val/loss`` stays comparable across settings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassificationLoss(nn.Module):
    """Mean cross-entropy of a batch, with label smoothing: the loss that training minimizes."""

    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices of ``targets``: themselves, or the dominant class of soft targets."""
    return targets.argmax(dim=1) if targets.is_floating_point() else targets

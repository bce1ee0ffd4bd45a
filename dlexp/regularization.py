"""Penalty regularization (``regularization.*``): L1/L2 penalties on the model's weights.

The training objective is the course formula

    L = (1/n) Σ_i loss_i + (λ₂/n) Σ_layers ‖W‖² + (λ₁/n) Σ_layers ‖W‖₁

with ``n`` the size of the training split (after any ``data.train_samples`` subsampling).
A mini-batch's mean loss is an unbiased estimate of ``(1/n) Σ_i loss_i``, so adding the
penalty term ``(λ/n) Σ ‖W‖²`` once per batch gives an unbiased estimate of ``L`` whatever the
batch size: λ means the same thing at batch size 32 and 512.

"Weights" are the weight matrices of linear layers and the kernels of convolutions (every
``weight`` parameter with two or more dimensions outside a normalization layer). Biases and
the affine parameters of normalization layers join only with ``include_bias`` /
``include_norm``; other parameters (1-d scales, tokens, embeddings of position) never do.
"""

from __future__ import annotations

import torch
from torch import nn

from dlexp.config import RegularizationConfig

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)


def penalized_parameters(
    model: nn.Module, *, include_bias: bool = False, include_norm: bool = False
) -> list[nn.Parameter]:
    """The parameters the penalty sums over (see the module docstring), each once."""
    chosen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for name, p in module.named_parameters(recurse=False):
            if is_norm:
                take = include_norm
            elif name == "bias":
                take = include_bias
            else:
                take = name == "weight" and p.dim() >= 2
            if take:
                chosen.setdefault(id(p), p)
    return list(chosen.values())


class WeightPenalty(nn.Module):
    """``(λ₂/n) Σ ‖W‖² + (λ₁/n) Σ ‖W‖₁`` over :func:`penalized_parameters` of ``model``.

    ``n`` is the training-set size. Calling the module returns the penalty as a scalar
    tensor in the autograd graph; add it to the batch's mean data loss.
    """

    def __init__(self, cfg: RegularizationConfig, model: nn.Module, n: int) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"the training-set size n must be >= 1, got {n}")
        self.l2, self.l1, self.n = float(cfg.l2), float(cfg.l1), int(n)
        # A plain list, not registered: the parameters belong to the model.
        self._params = penalized_parameters(
            model, include_bias=cfg.include_bias, include_norm=cfg.include_norm
        )

    @property
    def active(self) -> bool:
        return (self.l2 > 0 or self.l1 > 0) and bool(self._params)

    def forward(self) -> torch.Tensor:
        total = self._params[0].new_zeros(()) if self._params else torch.zeros(())
        if self.l2 > 0:
            total = total + (self.l2 / self.n) * sum(p.pow(2).sum() for p in self._params)
        if self.l1 > 0:
            total = total + (self.l1 / self.n) * sum(p.abs().sum() for p in self._params)
        return total

    def extra_repr(self) -> str:
        return f"l2={self.l2}, l1={self.l1}, n={self.n}, tensors={len(self._params)}"

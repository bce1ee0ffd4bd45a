"""Layer factories behind the uniform model knobs: norm, activation, pooling, init, WS."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
POOLINGS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


@dataclass(frozen=True)
class NormLayer:
    """A ``norm_layer`` factory: ``NormLayer(...)(channels)`` builds the 2-d (conv) norm.

    ``dense(features)`` builds the matching norm for ``(N, features)`` activations.
    ``layer`` normalizes over (C, H, W) per sample, i.e. GroupNorm with one group.
    """

    kind: str = "batch"
    eps: float = 1e-5
    momentum: float = 0.1
    groups: int = 32

    def __call__(self, channels: int) -> nn.Module:
        if self.kind == "batch":
            return nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        if self.kind == "group":
            return nn.GroupNorm(_groups_for(channels, self.groups), channels, eps=self.eps)
        if self.kind == "layer":
            return nn.GroupNorm(1, channels, eps=self.eps)
        return nn.Identity()

    def dense(self, features: int) -> nn.Module:
        if self.kind == "batch":
            return nn.BatchNorm1d(features, eps=self.eps, momentum=self.momentum)
        if self.kind == "group":
            return nn.GroupNorm(_groups_for(features, self.groups), features, eps=self.eps)
        if self.kind == "layer":
            return nn.LayerNorm(features, eps=self.eps)
        return nn.Identity()

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


def _groups_for(channels: int, wanted: int) -> int:
    """The largest group count <= ``wanted`` that divides ``channels``."""
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardization (Qiao et al. 2019).

    The kernel of each output channel is standardized to zero mean and unit variance
    in every forward pass; the stored parameter stays unconstrained. ``eps`` is BiT's
    (Kolesnikov et al. 2020): default-initialized kernels with a large fan-in have variances
    near 1e-5, which a larger ``eps`` would visibly shrink.
    """

    eps = 1e-10

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


def standardize_convs(model: nn.Module) -> nn.Module:
    """Turn every ``nn.Conv2d`` of ``model`` into a :class:`WSConv2d` in place."""
    for m in model.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = WSConv2d
    return model


def init_weights(model: nn.Module, scheme: str, activation: str = "relu") -> nn.Module:
    """Re-initialize conv and linear weights with ``scheme``; biases become zero."""
    if scheme == "default":
        return model
    nonlinearity = activation if activation in ("relu", "leaky_relu") else "relu"
    gain = nn.init.calculate_gain(activation if activation in ("tanh", "sigmoid") else "relu")
    for m in model.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight
        if scheme == "kaiming_normal":
            nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w, gain=gain)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=gain)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w, gain=1.0)
        else:  # guarded by the schema's choices
            raise ValueError(f"unknown init scheme {scheme!r}")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling window."""
    return math.floor((size + 2 * padding - kernel) / stride) + 1

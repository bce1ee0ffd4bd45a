"""Adapting torchvision's networks to the uniform knobs by swapping layers after construction.

torchvision hard-codes ``nn.ReLU(inplace=True)``, ``nn.MaxPool2d`` and ``nn.BatchNorm2d`` in
most of its classic networks; these helpers replace them in place with the configured
activation, pooling and normalization, so that torchvision's code need not be rewritten.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def make_act(act_layer: Callable[[], nn.Module]) -> nn.Module:
    """An activation module; ReLU runs in place, as torchvision builds it."""
    return nn.ReLU(inplace=True) if act_layer is nn.ReLU else act_layer()


def make_head(fc: nn.Linear, drop_rate: float) -> nn.Sequential:
    """The classifier head: optional dropout, then the final linear layer ``fc``."""
    return nn.Sequential(*([nn.Dropout(drop_rate)] if drop_rate > 0 else []), fc)


def replace_modules(
    root: nn.Module,
    match: Callable[[nn.Module], bool],
    make: Callable[[nn.Module], nn.Module],
) -> nn.Module:
    """Replace every descendant ``m`` of ``root`` with ``match(m)`` true by ``make(m)``."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))
    return root


def use_activation(root: nn.Module, act_layer: Callable[[], nn.Module]) -> nn.Module:
    """Swap every ``nn.ReLU`` of ``root`` for ``act_layer()`` (ReLU itself is left alone)."""
    if act_layer is nn.ReLU:
        return root
    return replace_modules(root, lambda m: type(m) is nn.ReLU, lambda m: act_layer())


def use_pooling(root: nn.Module, pool_layer: type[nn.Module]) -> nn.Module:
    """Swap every ``nn.MaxPool2d`` for ``pool_layer`` with the same window, stride and padding."""
    if pool_layer is nn.MaxPool2d:
        return root

    def make(m: nn.MaxPool2d) -> nn.Module:
        if pool_layer is nn.AvgPool2d:
            return nn.AvgPool2d(
                m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=False
            )
        return pool_layer(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)

    return replace_modules(root, lambda m: type(m) is nn.MaxPool2d, make)


def use_norm(root: nn.Module, norm_layer: Callable[[int], nn.Module]) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` for ``norm_layer(channels)``."""
    return replace_modules(
        root, lambda m: type(m) is nn.BatchNorm2d, lambda m: norm_layer(m.num_features)
    )

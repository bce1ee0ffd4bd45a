"""VGG-11/13/16/19 (Simonyan & Zisserman 2015) on torchvision's implementation.

``model.norm=batch`` gives torchvision's ``vgg*_bn`` (normalization after each convolution).
``model.stem=small`` (28-64 px) is the usual CIFAR VGG: the same convolutions, max-pools
that round up (so that 28 px survives five of them), global average pooling and a
classifier of 512-wide hidden layers instead of the 7x7x512 -> 4096 -> 4096 one.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

import torch
from torch import nn
from torchvision.models.vgg import VGG, cfgs, make_layers

from dlexp.config.model_base import resolve_stem
from dlexp.models.registry import Classifier, register_model
from dlexp.models.surgery import (
    make_act,
    make_head,
    use_activation,
    use_norm,
    use_pooling,
)


def _linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with torchvision's VGG initialization."""
    fc = nn.Linear(in_features, out_features)
    nn.init.normal_(fc.weight, 0, 0.01)
    nn.init.zeros_(fc.bias)
    return fc


def _blocks(features: nn.Sequential) -> OrderedDict:
    """``features`` cut after each max-pool: block1..block5."""
    blocks, current = OrderedDict(), []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = nn.Sequential(*current)
            current = []
    return blocks


def vgg_classifier(
    cfg: str,
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    stem,
) -> Classifier:
    """torchvision's VGG (layer configuration ``cfg``) split into block1..5, pool, fc6, fc7
    and the head (dropout + fc8)."""
    small = resolve_stem(stem, image_size) == "small"
    features = make_layers(cfgs[cfg], batch_norm=norm_layer.enabled)
    # torchvision initializes ``features``; the small stem replaces the 120M-parameter
    # classifier, so that one is only built on the meta device (no memory, no time).
    with torch.device("meta") if small else nullcontext():
        net = VGG(features, num_classes, init_weights=True, dropout=drop_rate)
    if in_channels != 3:
        conv = nn.Conv2d(in_channels, 64, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        net.features[0] = conv
    if small:
        for m in net.features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        pool = nn.AdaptiveAvgPool2d(1)
        fc6, fc7, fc8 = _linear(512, 512), _linear(512, 512), _linear(512, num_classes)
    else:
        pool, fc6, fc7, fc8 = net.avgpool, net.classifier[0], net.classifier[3], net.classifier[6]

    def dropout() -> list[nn.Module]:
        return [nn.Dropout(drop_rate)] if drop_rate > 0 else []

    backbone = nn.Sequential(
        OrderedDict(
            **_blocks(net.features),
            pool=pool,
            flatten=nn.Flatten(),
            fc6=nn.Sequential(fc6, make_act(nn.ReLU), *dropout()),
            fc7=nn.Sequential(fc7, make_act(nn.ReLU)),
        )
    )
    model = Classifier(backbone, make_head(fc8, drop_rate), fc7.out_features)
    if norm_layer.enabled:
        use_norm(model, norm_layer)
    return use_pooling(use_activation(model, act_layer), pool_layer)


@register_model("vgg11")
def vgg11(**kwargs) -> Classifier:
    """VGG-11 (configuration A)."""
    return vgg_classifier("A", **kwargs)


@register_model("vgg13")
def vgg13(**kwargs) -> Classifier:
    """VGG-13 (configuration B)."""
    return vgg_classifier("B", **kwargs)


@register_model("vgg16")
def vgg16(**kwargs) -> Classifier:
    """VGG-16 (configuration D)."""
    return vgg_classifier("D", **kwargs)


@register_model("vgg19")
def vgg19(**kwargs) -> Classifier:
    """VGG-19 (configuration E)."""
    return vgg_classifier("E", **kwargs)

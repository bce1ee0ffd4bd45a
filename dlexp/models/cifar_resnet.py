"""The CIFAR ResNets of He et al. 2016, section 4.2: ResNet-20/32/56 and their plain twins.

Three stages of n basic blocks (torchvision's ``BasicBlock``) with 16, 32 and 64 channels
after a 3x3 convolution, global average pooling and one linear layer: 6n + 2 layers. The
shortcuts that change the shape are the paper's option A: parameter-free (subsampling and
zero-padded channels), which gives its parameter counts (0.27M, 0.46M, 0.85M).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from dlexp.models.registry import Classifier, register_model
from dlexp.models.resnet import PlainBasicBlock, init_conv, zero_init_branches
from dlexp.models.surgery import make_act, make_head, use_activation


class ShortcutA(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = (planes - in_planes) // 2, planes - in_planes - (planes - in_planes) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, *self.pad))


def _stage(in_planes: int, planes: int, blocks: int, stride: int, norm_layer, residual: bool):
    layers = []
    for i in range(blocks):
        s = stride if i == 0 else 1
        if residual:
            short = ShortcutA(in_planes, planes, s) if s != 1 or in_planes != planes else None
            layers.append(BasicBlock(in_planes, planes, s, short, norm_layer=norm_layer))
        else:
            layers.append(PlainBasicBlock(in_planes, planes, s, norm_layer=norm_layer))
        in_planes = planes
    return nn.Sequential(*layers)


def cifar_resnet(
    depth: int,
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    residual,
) -> Classifier:
    """The (6n + 2)-layer CIFAR ResNet, split into stem, layer1..3, pool and head."""
    del image_size, pool_layer  # any size; no pooling but the global average
    n = (depth - 2) // 6
    backbone = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(
                init_conv(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)),
                norm_layer(16),
                make_act(nn.ReLU),
            ),
            layer1=_stage(16, 16, n, 1, norm_layer, residual),
            layer2=_stage(16, 32, n, 2, norm_layer, residual),
            layer3=_stage(32, 64, n, 2, norm_layer, residual),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            init_conv(m)
    model = Classifier(backbone, make_head(nn.Linear(64, num_classes), drop_rate), 64)
    if residual and not norm_layer.enabled:
        zero_init_branches(model)
    return use_activation(model, act_layer)


@register_model("resnet20")
def resnet20(**kwargs) -> Classifier:
    """ResNet-20 (n = 3)."""
    return cifar_resnet(20, **kwargs)


@register_model("resnet32")
def resnet32(**kwargs) -> Classifier:
    """ResNet-32 (n = 5)."""
    return cifar_resnet(32, **kwargs)


@register_model("resnet56")
def resnet56(**kwargs) -> Classifier:
    """ResNet-56 (n = 9)."""
    return cifar_resnet(56, **kwargs)

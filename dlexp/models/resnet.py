"""ResNet-18/34/50 (He et al. 2016) on torchvision's implementation, and the plain variants.

``model.residual=false`` builds the same network without skip connections (the "plain"
networks of the degradation experiment); ``model.stem=small`` replaces the 7x7 stride-2
convolution and max-pool by one 3x3 stride-1 convolution for 28-64 px images.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from dlexp.config.model_base import resolve_stem
from dlexp.models.registry import Classifier, register_model
from dlexp.models.surgery import make_head, use_activation, use_pooling


class PlainBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` without its skip connection (nor shortcut projection)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class PlainBottleneck(Bottleneck):
    """torchvision's ``Bottleneck`` without its skip connection (nor shortcut projection)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)))


PLAIN_BLOCKS = {BasicBlock: PlainBasicBlock, Bottleneck: PlainBottleneck}


def zero_init_branches(model: nn.Module) -> nn.Module:
    """Zero the last convolution of every residual branch, so that each block starts as the
    identity: without normalization, a deep ResNet's activations otherwise grow with depth
    (Fixup, Zhang et al. 2019; torchvision's ``zero_init_residual`` does it on the norm)."""
    for m in model.modules():
        if type(m) is BasicBlock:
            nn.init.zeros_(m.conv2.weight)
        elif type(m) is Bottleneck:
            nn.init.zeros_(m.conv3.weight)
    return model


def init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """torchvision's ResNet initialization of a convolution."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def resnet_classifier(
    block: type[nn.Module],
    layers: list[int],
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    stem,
    residual,
) -> Classifier:
    """torchvision's ``ResNet(block, layers)`` split into stem, layer1..4, pool and head."""
    net = ResNet(
        block if residual else PLAIN_BLOCKS[block], layers, num_classes, norm_layer=norm_layer
    )
    small = resolve_stem(stem, image_size) == "small"
    if small:
        net.conv1 = init_conv(nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False))
    elif in_channels != 3:
        net.conv1 = init_conv(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False))
    stem_layers = [net.conv1, net.bn1, net.relu, *([] if small else [net.maxpool])]
    backbone = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(*stem_layers),
            layer1=net.layer1,
            layer2=net.layer2,
            layer3=net.layer3,
            layer4=net.layer4,
            pool=net.avgpool,
            flatten=nn.Flatten(),
        )
    )
    model = Classifier(backbone, make_head(net.fc, drop_rate), net.fc.in_features)
    if residual and not norm_layer.enabled:
        zero_init_branches(model)
    return use_pooling(use_activation(model, act_layer), pool_layer)


@register_model("resnet18")
def resnet18(**kwargs) -> Classifier:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return resnet_classifier(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model("resnet34")
def resnet34(**kwargs) -> Classifier:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return resnet_classifier(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model("resnet50")
def resnet50(**kwargs) -> Classifier:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return resnet_classifier(Bottleneck, [3, 4, 6, 3], **kwargs)

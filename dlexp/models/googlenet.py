"""GoogLeNet / Inception v1 (Szegedy et al. 2015) on torchvision's implementation.

torchvision's ``BasicConv2d`` hard-codes batch norm (eps 0.001) and a functional ReLU, and
its auxiliary classifier a functional ReLU; both are given here as blocks that take the
norm and activation knobs (same parameters, same order). The auxiliary classifiers (after
inception4a and inception4d) are off by default; with ``model.aux_logits=true`` they train
with the loss weight ``model.aux_weight`` (0.3 in the paper) and are ignored at inference.
``model.stem=small`` uses a 3x3 stride-1 first convolution and drops the max-pool after it.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torchvision.models.googlenet import GoogLeNet, Inception

from dlexp.config.model_base import resolve_stem
from dlexp.models.registry import Classifier, register_model
from dlexp.models.surgery import make_act, make_head, use_pooling


class ConvBlock(nn.Module):
    """Convolution, normalization, activation: torchvision's ``BasicConv2d`` with the knobs.

    The convolution has a bias only when no normalization follows it.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm_layer, act_layer, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not norm_layer.enabled, **kwargs)
        self.norm = norm_layer(out_channels)
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class AuxHead(nn.Sequential):
    """torchvision's ``InceptionAux``: 4x4 average pool, 1x1 conv, fc 1024, dropout, fc."""

    def __init__(self, in_channels: int, num_classes: int, *, conv_block, act_layer, dropout=0.7):
        super().__init__(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d((4, 4)),
                conv=conv_block(in_channels, 128, kernel_size=1),
                flatten=nn.Flatten(),
                fc1=nn.Linear(2048, 1024),
                act=make_act(act_layer),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(1024, num_classes),
            )
        )


@register_model("googlenet")
def googlenet(
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    stem,
    aux_logits,
    aux_weight,
) -> Classifier:
    """torchvision's GoogLeNet split into stem, the inception stages, pools and head."""
    conv_block = partial(ConvBlock, norm_layer=norm_layer, act_layer=act_layer)
    aux_block = partial(AuxHead, conv_block=conv_block, act_layer=act_layer)
    net = GoogLeNet(
        num_classes,
        aux_logits=aux_logits,
        init_weights=True,
        blocks=[conv_block, partial(Inception, conv_block=conv_block), aux_block],
        dropout=drop_rate,
    )
    small = resolve_stem(stem, image_size) == "small"
    if small or in_channels != 3:
        k, s, p = (3, 1, 1) if small else (7, 2, 3)
        net.conv1 = conv_block(in_channels, 64, kernel_size=k, stride=s, padding=p)
        nn.init.trunc_normal_(net.conv1.conv.weight, mean=0.0, std=0.01, a=-2, b=2)
    stem_layers = [net.conv1, *([] if small else [net.maxpool1]), net.conv2, net.conv3]
    backbone = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(*stem_layers, net.maxpool2),
            inception3a=net.inception3a,
            inception3b=net.inception3b,
            pool3=net.maxpool3,
            inception4a=net.inception4a,
            inception4b=net.inception4b,
            inception4c=net.inception4c,
            inception4d=net.inception4d,
            inception4e=net.inception4e,
            pool4=net.maxpool4,
            inception5a=net.inception5a,
            inception5b=net.inception5b,
            pool=net.avgpool,
            flatten=nn.Flatten(),
        )
    )
    aux = {"inception4a": net.aux1, "inception4d": net.aux2} if aux_logits else None
    head = make_head(net.fc, drop_rate)
    model = Classifier(backbone, head, net.fc.in_features, aux_heads=aux, aux_weight=aux_weight)
    return use_pooling(model, pool_layer)

"""AlexNet (Krizhevsky et al. 2012, torchvision's single-tower "one weird trick" version).

The ImageNet stem (11x11 stride-4 convolution, max-pool) needs images of at least 63 px:
resize with ``data.image_size=64`` or use ``model.stem=small`` (a 3x3 stride-1 first
convolution without the max-pool after it). ``model.norm`` adds a normalization after each
convolution (the original's local response normalization is not offered).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models.alexnet import AlexNet

from dlexp.config.model_base import resolve_stem
from dlexp.models.registry import Classifier, register_model
from dlexp.models.surgery import make_act, use_activation, use_pooling


@register_model("alexnet")
def alexnet(
    *, in_channels, num_classes, image_size, norm_layer, act_layer, pool_layer, drop_rate, stem
) -> Classifier:
    """torchvision's AlexNet split into conv1..conv5, pool, fc6, fc7 and the head (fc8)."""
    net = AlexNet(num_classes, dropout=drop_rate)
    f, c = net.features, net.classifier
    small = resolve_stem(stem, image_size) == "small"
    conv1 = f[0]
    if small:
        conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1)
    elif in_channels != 3:
        conv1 = nn.Conv2d(in_channels, 64, 11, stride=4, padding=2)

    def stage(conv: nn.Conv2d, *pool: nn.Module) -> nn.Sequential:
        norm = [norm_layer(conv.out_channels)] if norm_layer.enabled else []
        return nn.Sequential(conv, *norm, make_act(nn.ReLU), *pool)

    def dropout() -> list[nn.Module]:
        return [nn.Dropout(drop_rate)] if drop_rate > 0 else []

    backbone = nn.Sequential(
        OrderedDict(
            conv1=stage(conv1, *([] if small else [f[2]])),
            conv2=stage(f[3], f[5]),
            conv3=stage(f[6]),
            conv4=stage(f[8]),
            conv5=stage(f[10], f[12]),
            pool=net.avgpool,
            flatten=nn.Flatten(),
            fc6=nn.Sequential(*dropout(), c[1], make_act(nn.ReLU)),
            fc7=nn.Sequential(*dropout(), c[4], make_act(nn.ReLU)),
        )
    )
    model = Classifier(backbone, nn.Sequential(c[6]), c[6].in_features)
    return use_pooling(use_activation(model, act_layer), pool_layer)

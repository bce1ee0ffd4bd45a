"""LeNet-5 (LeCun et al. 1998): conv5-pool-conv5-pool-fc120-fc84-fc."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dlexp.models.layers import conv_out
from dlexp.models.registry import Classifier, register_model


@register_model("lenet5")
def lenet5(
    *, in_channels, num_classes, image_size, norm_layer, act_layer, pool_layer, drop_rate
) -> Classifier:
    """LeNet-5 with configurable norm, activation, pooling and dropout.

    The paper's 32 px input is kept; smaller images (MNIST's 28 px) get the customary
    2-pixel padding on the first convolution.
    """
    pad = 2 if image_size < 32 else 0
    size = conv_out(conv_out(image_size, 5, padding=pad), 2, 2)
    size = conv_out(conv_out(size, 5), 2, 2)

    def dropout() -> list[nn.Module]:
        return [nn.Dropout(drop_rate)] if drop_rate > 0 else []

    bias = not norm_layer.enabled
    backbone = nn.Sequential(
        OrderedDict(
            conv1=nn.Sequential(
                nn.Conv2d(in_channels, 6, 5, padding=pad, bias=bias),
                norm_layer(6),
                act_layer(),
                pool_layer(2, 2),
            ),
            conv2=nn.Sequential(
                nn.Conv2d(6, 16, 5, bias=bias), norm_layer(16), act_layer(), pool_layer(2, 2)
            ),
            flatten=nn.Flatten(),
            fc1=nn.Sequential(
                *dropout(), nn.Linear(16 * size * size, 120), norm_layer.dense(120), act_layer()
            ),
            fc2=nn.Sequential(*dropout(), nn.Linear(120, 84), norm_layer.dense(84), act_layer()),
        )
    )
    head = nn.Sequential(*dropout(), nn.Linear(84, num_classes))
    return Classifier(backbone, head, 84)

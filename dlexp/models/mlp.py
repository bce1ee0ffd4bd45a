"""Multi-layer perceptron on flattened images."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dlexp.models.registry import Classifier, ModelConfig, register_model
from dlexp.schema import param


@dataclass
class MLPConfig(ModelConfig):
    hidden_sizes: list[int] = param(factory=lambda: [256, 128], ge=1, each=True)


@register_model("mlp", MLPConfig)
def mlp(
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    hidden_sizes,
) -> Classifier:
    """Flatten -> [Linear -> norm -> activation -> dropout] x len(hidden_sizes) -> Linear."""
    del pool_layer  # an MLP has no pooling; the knob is accepted for uniformity
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * image_size * image_size
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), norm_layer.dense(hidden), act_layer()]
        if drop_rate > 0:
            layers.append(nn.Dropout(drop_rate))
        width = hidden
    return Classifier(nn.Sequential(*layers), nn.Linear(width, num_classes), width)

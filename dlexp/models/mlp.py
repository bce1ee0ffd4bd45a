"""Multi-layer perceptron on flattened images."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dlexp.models.registry import Classifier, register_model


@register_model("mlp")
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
    """Flatten -> [Linear -> norm -> activation -> dropout] x len(hidden_sizes) -> Linear.

    The backbone's stages are ``flatten``, ``fc1``, ``fc2`` …; the head is the last Linear.
    """
    del pool_layer  # an MLP has no pooling (the config check rejects pooling=avg)
    stages: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = in_channels * image_size * image_size
    for i, hidden in enumerate(hidden_sizes, 1):
        layers = [nn.Linear(width, hidden), norm_layer.dense(hidden), act_layer()]
        if drop_rate > 0:
            layers.append(nn.Dropout(drop_rate))
        stages[f"fc{i}"] = nn.Sequential(*layers)
        width = hidden
    return Classifier(nn.Sequential(stages), nn.Linear(width, num_classes), width)

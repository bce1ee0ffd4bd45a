"""Model registry: config name -> (schema, builder), and the one factory that builds them all.

A builder is called with uniform keyword arguments (timm/torchvision style):
``in_channels``, ``num_classes``, ``image_size``, ``norm_layer`` (a :class:`NormLayer`),
``act_layer`` (an activation class), ``pool_layer`` (a pooling class) and ``drop_rate``,
plus the model's own keys from its schema. It returns a :class:`Classifier`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from dlexp.errors import ConfigError
from dlexp.models.layers import (
    ACTIVATIONS,
    INITS,
    NORMS,
    POOLINGS,
    NormLayer,
    init_weights,
    standardize_convs,
)
from dlexp.schema import param


@dataclass
class ModelConfig:
    """Knobs every model takes (``conf/model/*.yaml``)."""

    name: str = MISSING
    norm: str = param("none", choices=NORMS)
    norm_eps: float = param(1e-5, gt=0)
    norm_momentum: float = param(0.1, gt=0, le=1)
    norm_groups: int = param(32, ge=1)
    weight_standardization: bool = False
    activation: str = param("relu", choices=tuple(ACTIVATIONS))
    pooling: str = param("max", choices=tuple(POOLINGS))
    dropout: Any = param(0.0, ge=0, lt=1)  # a rate, or true for DEFAULT_DROPOUT
    init: str = param("default", choices=INITS)

    def check(self, key: str) -> None:
        dropout_rate(self.dropout, f"{key}.dropout")


DEFAULT_DROPOUT = 0.2  # the usual recommendation, used by ``model.dropout=true``


def dropout_rate(value: Any, key: str = "model.dropout") -> float:
    """``model.dropout`` as a rate: ``true`` is :data:`DEFAULT_DROPOUT`, ``false`` is 0."""
    if isinstance(value, bool):
        return DEFAULT_DROPOUT if value else 0.0
    if isinstance(value, (int, float)) and 0 <= value < 1:
        return float(value)
    raise ConfigError(key, value, f"must be a rate in [0, 1), or true for {DEFAULT_DROPOUT}")


UNIFORM_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


class Classifier(nn.Module):
    """``head(backbone(x))``: a feature extractor and the classifier on its features."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = num_features

    def forward(self, x):
        return self.head(self.backbone(x))


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its schema, builder and smallest supported input size."""

    name: str
    config: type
    builder: Callable[..., Classifier]
    min_image_size: int = 1


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config: type, min_image_size: int = 1):
    """Decorator registering ``builder`` under ``name`` with its config dataclass."""

    def decorator(builder: Callable[..., Classifier]) -> Callable[..., Classifier]:
        MODELS[name] = ModelSpec(name, config, builder, min_image_size)
        return builder

    return decorator


def build_model(
    cfg: DictConfig | dict[str, Any], *, in_channels: int, num_classes: int, image_size: int
) -> Classifier:
    """Build the model named ``cfg.name`` for data of the given shape."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    spec = MODELS.get(cfg["name"])
    if spec is None:
        raise ConfigError("model.name", cfg["name"], "must be one of: " + ", ".join(sorted(MODELS)))
    if image_size < spec.min_image_size:
        raise ConfigError(
            "data.image_size",
            image_size,
            f"model {spec.name} needs images of at least {spec.min_image_size} px",
        )
    own = {k: v for k, v in cfg.items() if k not in UNIFORM_KEYS}
    model = spec.builder(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        norm_layer=NormLayer(
            cfg["norm"], cfg["norm_eps"], cfg["norm_momentum"], cfg["norm_groups"]
        ),
        act_layer=ACTIVATIONS[cfg["activation"]],
        pool_layer=POOLINGS[cfg["pooling"]],
        drop_rate=dropout_rate(cfg["dropout"]),
        **own,
    )
    if cfg["weight_standardization"]:
        standardize_convs(model)
    return init_weights(model, cfg["init"], cfg["activation"])

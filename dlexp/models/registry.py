"""Model registry: each schema's name (:mod:`dlexp.config.model`) bound to its builder,
and the one factory that builds them all.

A builder is called with uniform keyword arguments (timm/torchvision style):
``in_channels``, ``num_classes``, ``image_size``, ``norm_layer`` (a :class:`NormLayer`),
``act_layer`` (an activation class), ``pool_layer`` (a pooling class) and ``drop_rate``,
plus the model's own keys from its schema. It returns a :class:`Classifier`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch
from torch import nn

from dlexp.config.data import DataShape
from dlexp.config.model import MODEL_SCHEMAS, UNIFORM_KEYS
from dlexp.config.model_base import ModelConfig, UnsupportedError, dropout_rate
from dlexp.errors import ConfigError
from dlexp.models.layers import (
    ACTIVATIONS,
    POOLINGS,
    NormLayer,
    init_weights,
    standardize_convs,
)

__all__ = [
    "MODELS",
    "Classifier",
    "UnsupportedError",
    "build_model",
    "build_on_meta",
    "register_model",
]


class Classifier(nn.Module):
    """``head(backbone(x))``: a feature extractor and the classifier on its features.

    ``backbone`` is an ``nn.Sequential`` of the model's named stages (see :meth:`stages`);
    ``aux_heads`` (GoogLeNet's auxiliary classifiers, empty elsewhere) tap the output of
    the stage they are keyed by and only run through :meth:`forward_aux` in training.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_features: int,
        aux_heads: Mapping[str, nn.Module] | None = None,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aux_heads = nn.ModuleDict(aux_heads or {})  # registered before head: torchvision order
        self.head = head
        self.num_features = num_features
        self.aux_weight = aux_weight
        self.memory_format = torch.contiguous_format  # of the input (see :func:`speed_up`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self.head(self.backbone(x))

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the auxiliary heads' logits (in stage order); the loss weighs the
        latter by :attr:`aux_weight`."""
        aux = []
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        for name, stage in self.backbone.named_children():
            x = stage(x)
            if name in self.aux_heads:
                aux.append(self.aux_heads[name](x))
        return self.head(x), aux

    def stages(self) -> dict[str, nn.Module]:
        """The backbone's stages by name, in order, then ``head``: what transfer freezes."""
        return {**dict(self.backbone.named_children()), "head": self.head}


MODELS: dict[str, Callable[..., Classifier]] = {}  # schema name -> builder


def register_model(name: str):
    """Decorator binding ``builder`` to the schema ``name`` of :data:`MODEL_SCHEMAS`.

    A name without a schema, or one already bound, is refused.
    """

    def decorator(builder: Callable[..., Classifier]) -> Callable[..., Classifier]:
        if name not in MODEL_SCHEMAS:
            raise ValueError(f"model {name!r} has no schema in dlexp.config.model")
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered already ({MODELS[name].__name__})")
        MODELS[name] = builder
        return builder

    return decorator


def build_model(
    cfg: ModelConfig, *, in_channels: int, num_classes: int, image_size: int
) -> Classifier:
    """Build the model of ``cfg`` (a typed, validated model node) for data of this shape."""
    builder = MODELS.get(cfg.name)
    if builder is None:
        raise ConfigError("model.name", cfg.name, "must be one of: " + ", ".join(sorted(MODELS)))
    cfg.check_input(image_size)
    own = {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in UNIFORM_KEYS
    }
    model = builder(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        norm_layer=NormLayer(cfg.norm, cfg.norm_eps, cfg.norm_momentum, cfg.norm_groups),
        act_layer=ACTIVATIONS[cfg.activation],
        pool_layer=POOLINGS[cfg.pooling],
        drop_rate=dropout_rate(cfg.dropout),
        **own,
    )
    if cfg.weight_standardization:
        standardize_convs(model)
    model = init_weights(model, cfg.init, cfg.activation)
    return speed_up(model, cfg.channels_last, cfg.compile, cfg.compile_backend)


def build_on_meta(cfg: ModelConfig, shape: DataShape) -> Classifier:
    """The model of ``cfg`` for data of ``shape`` on the meta device: its structure, no
    memory and no time (not compiled)."""
    with torch.device("meta"):
        return build_model(
            dataclasses.replace(cfg, compile=False),
            in_channels=shape.in_channels,
            num_classes=shape.num_classes,
            image_size=shape.image_size,
        )


def speed_up(model: Classifier, channels_last: bool, compile: bool, backend: str) -> Classifier:
    """``model.channels_last`` and ``model.compile``: same numbers, faster on GPUs.

    channels_last stores weights and inputs as NHWC (the layout tensor cores want);
    compiling is ``torch.compile(dynamic=False)`` in place, so state dicts and attributes
    are unchanged. Each distinct batch shape (full batches, a last partial batch, evaluation)
    compiles once and is then reused; shapes never become dynamic.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        model.memory_format = torch.channels_last
    if compile:
        model.compile(dynamic=False, backend=backend)
    return model

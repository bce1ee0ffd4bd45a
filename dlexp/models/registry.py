"""Model registry: config name -> (schema, builder), and the one factory that builds them all.

A builder is called with uniform keyword arguments (timm/torchvision style):
``in_channels``, ``num_classes``, ``image_size``, ``norm_layer`` (a :class:`NormLayer`),
``act_layer`` (an activation class), ``pool_layer`` (a pooling class) and ``drop_rate``,
plus the model's own keys from its schema. It returns a :class:`Classifier`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
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
from dlexp.models.surgery import STEMS, resolve_stem
from dlexp.schema import param


class UnsupportedError(ConfigError):
    """A valid value that this model cannot take (image too small, a knob it has no use for).

    ``reason`` is the short form that ``dlexp models`` shows.
    """

    def __init__(self, key: str, value: object, allowed: str, reason: str = "") -> None:
        super().__init__(key, value, allowed)
        self.reason = reason or allowed


COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")


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
    channels_last: bool = False  # NHWC weights and inputs (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the model (static shapes)
    compile_backend: str = param("inductor", choices=COMPILE_BACKENDS)

    def has_pooling(self, stem: str | None) -> bool:
        """Whether the model (with this resolved stem) has a pooling layer for ``pooling``."""
        return True

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


@dataclass
class StemModelConfig(ModelConfig):
    """A network with an ImageNet stem and an adaptation for small images (``model.stem``)."""

    stem: str = param("auto", choices=STEMS)


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


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its schema, builder and input constraints.

    ``min_image_size`` is one size or a size per resolved ``stem``. ``torchvision_arch``
    names the torchvision model whose weights fit the model built with ``stem=imagenet``
    and 3 channels (``torchvision_arch_bn`` the one for ``norm=batch`` where it differs).
    """

    name: str
    config: type
    builder: Callable[..., Classifier]
    min_image_size: int | Mapping[str, int] = 1
    torchvision_arch: str | None = None
    torchvision_arch_bn: str | None = None

    def min_size(self, stem: str | None) -> int:
        if isinstance(self.min_image_size, Mapping):
            return self.min_image_size[stem]
        return self.min_image_size

    def torchvision_arch_for(self, norm: str) -> str | None:
        """The torchvision architecture matching this model with ``norm``."""
        if norm == "batch" and self.torchvision_arch_bn:
            return self.torchvision_arch_bn
        return self.torchvision_arch


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    config: type,
    min_image_size: int | Mapping[str, int] = 1,
    torchvision_arch: str | None = None,
    torchvision_arch_bn: str | None = None,
):
    """Decorator registering ``builder`` under ``name`` with its config dataclass."""

    def decorator(builder: Callable[..., Classifier]) -> Callable[..., Classifier]:
        MODELS[name] = ModelSpec(
            name, config, builder, min_image_size, torchvision_arch, torchvision_arch_bn
        )
        return builder

    return decorator


def default_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The config of model ``name`` as its schema's defaults give it, with ``overrides``."""
    if name not in MODELS:
        raise ConfigError("model", name, "must be one of: " + ", ".join(sorted(MODELS)))
    return {**dataclasses.asdict(MODELS[name].config(name=name)), **overrides}


def check_model_input(cfg: Any, image_size: int) -> None:
    """Raise :class:`UnsupportedError` where the model of ``cfg`` (its typed config) cannot
    take images of ``image_size`` px or has no use for one of its knobs."""
    spec = MODELS[cfg.name]
    stem = resolve_stem(getattr(cfg, "stem", None), image_size)
    which = f"{cfg.name} with stem {stem}" if stem else cfg.name
    need = spec.min_size(stem)
    if image_size < need:
        alternative = " or model.stem=small" if stem == "imagenet" else ""
        raise UnsupportedError(
            "data.image_size",
            image_size,
            f"model {which} needs images of at least {need} px; "
            f"resize them with data.image_size={need}{alternative}",
            reason=f"needs >= {need} px" + (f" with stem {stem}" if stem else ""),
        )
    if cfg.pooling != "max" and not cfg.has_pooling(stem):
        raise UnsupportedError(
            "model.pooling",
            cfg.pooling,
            f"model {which} has no max-pooling layer to replace; leave pooling at max",
        )


def build_model(
    cfg: DictConfig | Mapping[str, Any], *, in_channels: int, num_classes: int, image_size: int
) -> Classifier:
    """Build the model named ``cfg.name`` for data of the given shape."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    spec = MODELS.get(cfg["name"])
    if spec is None:
        raise ConfigError("model.name", cfg["name"], "must be one of: " + ", ".join(sorted(MODELS)))
    typed = spec.config(**cfg)
    if hasattr(typed, "check"):
        typed.check("model")
    check_model_input(typed, image_size)
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
    model = init_weights(model, cfg["init"], cfg["activation"])
    return speed_up(model, typed.channels_last, typed.compile, typed.compile_backend)


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

"""The knobs every ``model`` schema shares (:class:`ModelConfig`), their choices and helpers.

The schemas of the models themselves, and the registry of their names, are in
:mod:`dlexp.config.model` (the group's home, which re-exports these names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError

NORMS = ("none", "batch", "group", "layer")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid")
POOLINGS = ("max", "avg")
INITS = (
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "orthogonal",
)
STEMS = ("auto", "imagenet", "small")
SMALL_STEM_MAX_SIZE = 64  # ``stem: auto`` picks ``small`` for images up to this size (px)
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
DEFAULT_DROPOUT = 0.2  # the usual recommendation, used by ``model.dropout=true``


class UnsupportedError(ConfigError):
    """A valid value that this model cannot take (image too small, a knob it has no use for).

    ``reason`` is the short form that ``dlexp models`` shows.
    """

    def __init__(self, key: str, value: object, allowed: str, reason: str = "") -> None:
        super().__init__(key, value, allowed)
        self.reason = reason or allowed


def resolve_stem(stem: str | None, image_size: int) -> str | None:
    """``auto`` -> ``small`` for images <= 64 px, else ``imagenet``; other values unchanged."""
    if stem == "auto":
        return "small" if image_size <= SMALL_STEM_MAX_SIZE else "imagenet"
    return stem


def dropout_rate(value: Any, key: str = "model.dropout") -> float:
    """``model.dropout`` as a rate: ``true`` is :data:`DEFAULT_DROPOUT`, ``false`` is 0."""
    if isinstance(value, bool):
        return DEFAULT_DROPOUT if value else 0.0
    if isinstance(value, (int, float)) and 0 <= value < 1:
        return float(value)
    raise ConfigError(key, value, f"must be a rate in [0, 1), or true for {DEFAULT_DROPOUT}")


@dataclass
class ModelConfig:
    """Knobs every model takes.

    ``dropout`` is a rate, or ``true`` for :data:`DEFAULT_DROPOUT`; ``norm`` is placed after
    each convolution (``layer``: over C, H, W per sample); ``init`` re-initializes every
    convolution and linear layer (``default``: the architecture's own scheme).
    """

    min_image_size: ClassVar[int | Mapping[str, int]] = 1  # px; per stem where it has one
    torchvision_arch: ClassVar[str | None] = None  # whose weights fit (3 channels, imagenet stem)
    torchvision_arch_bn: ClassVar[str | None] = None  # the same with norm=batch, where it differs

    name: str = MISSING
    norm: str = param("none", choices=NORMS)
    norm_eps: float = param(1e-5, gt=0)
    norm_momentum: float = param(0.1, gt=0, le=1)
    norm_groups: int = param(32, ge=1)
    weight_standardization: bool = False
    activation: str = param("relu", choices=ACTIVATIONS)
    pooling: str = param("max", choices=POOLINGS)
    dropout: Any = 0.0
    init: str = param("default", choices=INITS)
    channels_last: bool = False  # NHWC weights and inputs (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the model (static shapes)
    compile_backend: str = param("inductor", choices=COMPILE_BACKENDS)

    @property
    def stem_choice(self) -> str | None:
        """``stem`` for models that have one, else None."""
        return getattr(self, "stem", None)

    def has_pooling(self, stem: str | None) -> bool:
        """Whether the model (with this resolved stem) has a pooling layer for ``pooling``."""
        return True

    def min_size(self, stem: str | None) -> int:
        if isinstance(self.min_image_size, Mapping):
            return self.min_image_size[stem]
        return self.min_image_size

    def torchvision_arch_for(self) -> str | None:
        """The torchvision architecture matching this model and its ``norm``."""
        if self.norm == "batch" and self.torchvision_arch_bn:
            return self.torchvision_arch_bn
        return self.torchvision_arch

    def check(self, key: str) -> None:
        dropout_rate(self.dropout, f"{key}.dropout")

    def check_input(self, image_size: int) -> None:
        """Raise :class:`UnsupportedError` where this model cannot take images of
        ``image_size`` px or has no use for one of its knobs."""
        stem = resolve_stem(self.stem_choice, image_size)
        which = f"{self.name} with stem {stem}" if stem else self.name
        need = self.min_size(stem)
        if image_size < need:
            alternative = " or model.stem=small" if stem == "imagenet" else ""
            raise UnsupportedError(
                "data.image_size",
                image_size,
                f"model {which} needs images of at least {need} px; "
                f"resize them with data.image_size={need}{alternative}",
                reason=f"needs >= {need} px" + (f" with stem {stem}" if stem else ""),
            )
        if self.pooling != "max" and not self.has_pooling(stem):
            raise UnsupportedError(
                "model.pooling",
                self.pooling,
                f"model {which} has no max-pooling layer to replace; leave pooling at max",
            )


@dataclass
class StemModelConfig(ModelConfig):
    """An ImageNet network with an adaptation for small images: ``stem=small`` (3x3/1
    first convolution, no early pooling); ``auto`` picks it up to 64 px."""

    stem: str = param("auto", choices=STEMS)

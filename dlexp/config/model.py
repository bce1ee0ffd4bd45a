"""The ``model`` group's schemas (``dlexp/conf/model/*.yaml``): one dataclass per model.

Every model takes the uniform knobs of :class:`ModelConfig`; a family adds its own keys.
Each schema carries the facts needed to check it without building anything: the smallest
image it takes (per resolved ``stem``) and the torchvision architecture whose pretrained
weights fit it (``vgg11`` or, with ``norm=batch``, ``vgg11_bn``). The builders are bound to
these names in :mod:`dlexp.models`.
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


@dataclass
class MLPConfig(ModelConfig):
    """A multi-layer perceptron on flattened images: Linear-norm-activation-dropout blocks."""

    name: str = "mlp"
    hidden_sizes: list[int] = param(factory=lambda: [256, 128], ge=1, each=True)

    def has_pooling(self, stem: str | None) -> bool:
        return False

    def check(self, key: str) -> None:
        super().check(key)
        if self.weight_standardization:
            raise UnsupportedError(
                f"{key}.weight_standardization", True, "mlp has no convolution to standardize"
            )


@dataclass
class LeNet5Config(ModelConfig):
    """LeNet-5 (LeCun et al. 1998): conv5-pool-conv5-pool-fc120-fc84-fc."""

    min_image_size: ClassVar[int] = 12
    name: str = "lenet5"


@dataclass
class AlexNetConfig(StemModelConfig):
    """AlexNet (Krizhevsky et al. 2012), torchvision's; dropout before fc6 and fc7."""

    min_image_size: ClassVar[Mapping[str, int]] = {"imagenet": 63, "small": 7}
    torchvision_arch: ClassVar[str] = "alexnet"
    name: str = "alexnet"
    dropout: Any = 0.5


@dataclass
class VGGConfig(StemModelConfig):
    """VGG (Simonyan & Zisserman 2015), torchvision's; ``norm=batch`` is its ``vgg*_bn``.
    ``dropout``: the classifier's two dropouts."""

    min_image_size: ClassVar[Mapping[str, int]] = {"imagenet": 32, "small": 1}
    dropout: Any = 0.5


@dataclass
class VGG11Config(VGGConfig):
    torchvision_arch: ClassVar[str] = "vgg11"
    torchvision_arch_bn: ClassVar[str] = "vgg11_bn"
    name: str = "vgg11"


@dataclass
class VGG13Config(VGGConfig):
    torchvision_arch: ClassVar[str] = "vgg13"
    torchvision_arch_bn: ClassVar[str] = "vgg13_bn"
    name: str = "vgg13"


@dataclass
class VGG16Config(VGGConfig):
    torchvision_arch: ClassVar[str] = "vgg16"
    torchvision_arch_bn: ClassVar[str] = "vgg16_bn"
    name: str = "vgg16"


@dataclass
class VGG19Config(VGGConfig):
    torchvision_arch: ClassVar[str] = "vgg19"
    torchvision_arch_bn: ClassVar[str] = "vgg19_bn"
    name: str = "vgg19"


@dataclass
class GoogLeNetConfig(StemModelConfig):
    """GoogLeNet (Szegedy et al. 2015), torchvision's, with BatchNorm (BasicConv2d);
    ``aux_logits`` trains the two auxiliary classifiers, weighted by ``aux_weight``."""

    min_image_size: ClassVar[Mapping[str, int]] = {"imagenet": 15, "small": 4}
    torchvision_arch: ClassVar[str] = "googlenet"
    name: str = "googlenet"
    norm: str = param("batch", choices=NORMS)
    norm_eps: float = param(1e-3, gt=0)  # torchvision's BasicConv2d
    dropout: Any = 0.2  # before the last layer (torchvision's default)
    aux_logits: bool = False
    aux_weight: float = param(0.3, ge=0)


@dataclass
class ResNetConfig(StemModelConfig):
    """ResNet (He et al. 2016), torchvision's; ``residual=false`` is the plain network."""

    norm: str = param("batch", choices=NORMS)
    residual: bool = True

    def has_pooling(self, stem: str | None) -> bool:
        return stem == "imagenet"  # the small stem has no max-pool


@dataclass
class ResNet18Config(ResNetConfig):
    torchvision_arch: ClassVar[str] = "resnet18"
    name: str = "resnet18"


@dataclass
class ResNet34Config(ResNetConfig):
    torchvision_arch: ClassVar[str] = "resnet34"
    name: str = "resnet34"


@dataclass
class ResNet50Config(ResNetConfig):
    torchvision_arch: ClassVar[str] = "resnet50"
    name: str = "resnet50"


@dataclass
class CifarResNetConfig(ModelConfig):
    """The CIFAR ResNets (He et al. 2016, section 4.2): 6n+2 layers, option-A shortcuts;
    ``residual=false`` is the plain network of the degradation experiment."""

    norm: str = param("batch", choices=NORMS)
    residual: bool = True

    def has_pooling(self, stem: str | None) -> bool:
        return False  # strided convolutions and global average pooling only


@dataclass
class ResNet20Config(CifarResNetConfig):
    name: str = "resnet20"


@dataclass
class ResNet32Config(CifarResNetConfig):
    name: str = "resnet32"


@dataclass
class ResNet56Config(CifarResNetConfig):
    name: str = "resnet56"


@dataclass
class SpeedNetConfig(ModelConfig):
    """The small fast network of the speed runs (after Keller Jordan's airbench and
    hlb-CIFAR10): a frozen patch-whitening convolution, one conv group per entry of
    ``widths`` (conv3-pool-norm-act-conv3-norm-act), a global max-pool and a bias-free linear
    layer whose logits are multiplied by ``logit_scale``.

    The whitening's 2·c·k² filters (k = ``whiten_kernel``) are ± the eigenvectors of the
    covariance of k x k patches of ``whiten_samples`` training images, each divided by
    sqrt(eigenvalue + ``whiten_eps``): set from the data before training, then fixed (they
    are buffers, not parameters). With ``norm: batch`` and ``norm_scale: false`` BatchNorm's
    scale stays 1 and its shift is ``norm_shift_gain`` x a parameter, which plain SGD then
    moves gain² times faster than the other weights (airbench's 64x rate is gain 8).
    """

    name: str = "speednet"
    norm: str = param("batch", choices=NORMS)
    norm_momentum: float = param(0.4, gt=0, le=1)  # airbench's 0.6 in torch's convention
    activation: str = param("gelu", choices=ACTIVATIONS)
    widths: list[int] = param(factory=lambda: [64, 256, 256], ge=1, each=True)
    whiten_kernel: int = param(2, ge=1, le=8)
    whiten_eps: float = param(5e-4, gt=0)
    whiten_samples: int = param(5000, ge=1)
    logit_scale: float = param(1 / 9, gt=0)
    norm_scale: bool = False
    norm_shift_gain: float = param(8.0, gt=0)

    def min_size(self, stem: str | None) -> int:
        # each group halves the whitened map (size - k + 1), which must not reach 0
        return 2 ** len(self.widths) + self.whiten_kernel - 1

    def check(self, key: str) -> None:
        super().check(key)
        if not self.widths:
            raise ConfigError(f"{key}.widths", [], "must list one width per conv group")


MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {
    schema.name: schema
    for schema in (
        MLPConfig,
        LeNet5Config,
        AlexNetConfig,
        VGG11Config,
        VGG13Config,
        VGG16Config,
        VGG19Config,
        GoogLeNetConfig,
        ResNet18Config,
        ResNet34Config,
        ResNet50Config,
        ResNet20Config,
        ResNet32Config,
        ResNet56Config,
        SpeedNetConfig,
    )
}
UNIFORM_KEYS = frozenset(ModelConfig.__dataclass_fields__)


def model_config(name: str, **values: Any) -> ModelConfig:
    """The typed config of model ``name`` with ``values`` set (what ``model=<name>
    model.<key>=<value>`` composes to), validated."""
    from dlexp.config.fields import validate

    if name not in MODEL_SCHEMAS:
        raise ConfigError("model", name, "must be one of: " + ", ".join(sorted(MODEL_SCHEMAS)))
    cfg = MODEL_SCHEMAS[name](**values)
    validate(cfg, "model.")
    return cfg

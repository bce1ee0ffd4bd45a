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

from dlexp.config.fields import param
from dlexp.config.model_base import (
    ACTIVATIONS,
    NORMS,
    ModelConfig,
    StemModelConfig,
    UnsupportedError,
)
from dlexp.errors import ConfigError


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

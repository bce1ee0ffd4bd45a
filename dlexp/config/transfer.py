"""The ``transfer`` group's schemas (``dlexp/conf/transfer/*.yaml``): one per policy.

A policy says where the initial weights come from and which parts of the model train;
each schema has only the keys its policy uses, so a key of another policy is refused like
an unknown model key.

* ``scratch``: a fresh initialization (the default).
* ``finetune``: load ``source``, train everything.
* ``linear_probe``: load ``source``, freeze the whole backbone, train the head.
* ``freeze_stages``: load ``source``, freeze the backbone's stages up to ``freeze_until``.
* ``gradual``: load ``source``, train the head with the backbone frozen, then unfreeze the
  backbone at ``unfreeze_at_epoch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError

TORCHVISION_PREFIX = "torchvision:"


def is_torchvision(source: str) -> bool:
    """Whether ``source`` names torchvision's pretrained weights (``torchvision:<name>``)."""
    return source.startswith(TORCHVISION_PREFIX)


@dataclass
class TransferConfig:
    """``backbone_lr_factor``: the backbone's learning rate relative to the head's
    (discriminative learning rates; the backbone gets its own optimizer param group)."""

    name: str = MISSING
    backbone_lr_factor: float = param(1.0, gt=0)

    @property
    def loads_weights(self) -> bool:
        return False


@dataclass
class ScratchConfig(TransferConfig):
    name: str = "scratch"


@dataclass
class PretrainedConfig(TransferConfig):
    """A policy that starts from ``source``: a dlexp run directory, a ``.ckpt``/state-dict
    file, or ``torchvision:<weights>`` (e.g. ``torchvision:IMAGENET1K_V1``).

    ``head``: ``auto`` (a new head when the class count differs), ``new`` or ``keep``.
    ``channel_adapt``: how the first convolution follows a different input channel count
    (``sum`` or ``mean`` of the source's filters). ``download``: fetch torchvision weights
    missing from the torch hub cache.
    """

    source: str | None = None
    head: str = param("auto", choices=("auto", "new", "keep"))
    channel_adapt: str = param("sum", choices=("sum", "mean"))
    download: bool = True

    @property
    def loads_weights(self) -> bool:
        return True

    def check(self, key: str) -> None:
        if not self.source:
            raise ConfigError(
                f"{key}.source",
                self.source,
                f"{key}={self.name} needs a source: a dlexp run directory, a .ckpt file or "
                f"{TORCHVISION_PREFIX}<weights name>",
            )
        if not is_torchvision(self.source) and not Path(self.source).expanduser().exists():
            raise ConfigError(
                f"{key}.source",
                self.source,
                "no such file or directory (a dlexp run directory, a .ckpt file, or "
                f"{TORCHVISION_PREFIX}<weights name>)",
            )


@dataclass
class FinetuneConfig(PretrainedConfig):
    name: str = "finetune"


@dataclass
class FrozenBackboneConfig(PretrainedConfig):
    """``bn``: ``freeze`` keeps the BatchNorm layers of frozen stages in eval mode with fixed
    affine parameters (also after a ``gradual`` unfreeze); ``train`` lets them train."""

    bn: str = param("freeze", choices=("freeze", "train"))


@dataclass
class LinearProbeConfig(FrozenBackboneConfig):
    name: str = "linear_probe"


@dataclass
class FreezeStagesConfig(FrozenBackboneConfig):
    """``freeze_until``: the last frozen stage of the backbone, by name or index (negative:
    from the end); null: every stage but the last one with parameters."""

    name: str = "freeze_stages"
    freeze_until: Any = None

    def check(self, key: str) -> None:
        super().check(key)
        value = self.freeze_until
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise ConfigError(
                f"{key}.freeze_until", value, "must be a stage index or a backbone stage name"
            )


@dataclass
class GradualConfig(FrozenBackboneConfig):
    """The backbone is frozen for the first ``unfreeze_at_epoch`` epochs, then trains at
    ``backbone_lr_factor`` times the head's scheduled rate, times ``lr_growth``^k in the k-th
    epoch after the unfreeze, never above the head's rate. Its param group is in the
    optimizer from the start (frozen), so every schedule scales it with the head's."""

    name: str = "gradual"
    backbone_lr_factor: float = param(0.1, gt=0)
    unfreeze_at_epoch: int = param(5, ge=1)
    lr_growth: float = param(1.5, ge=1)


TRANSFER_SCHEMAS: dict[str, type[TransferConfig]] = {
    schema.name: schema
    for schema in (
        ScratchConfig,
        FinetuneConfig,
        LinearProbeConfig,
        FreezeStagesConfig,
        GradualConfig,
    )
}

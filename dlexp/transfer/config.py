"""The ``transfer`` config group's schema (``conf/transfer/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlexp.errors import ConfigError
from dlexp.schema import param

POLICIES = ("scratch", "finetune", "linear_probe", "freeze_stages", "gradual")
TORCHVISION_PREFIX = "torchvision:"


@dataclass
class TransferConfig:
    """Where the initial weights come from and which parts of the model train.

    * ``name``: the policy. ``scratch`` (no weights loaded), ``finetune`` (load, train
      everything), ``linear_probe`` (freeze the backbone), ``freeze_stages`` (freeze the
      backbone's stages up to ``freeze_until``), ``gradual`` (freeze the backbone, unfreeze it
      at ``unfreeze_at_epoch`` with a learning rate that grows).
    * ``source``: a dlexp run directory, a ``.ckpt``/state-dict file, or
      ``torchvision:<weights>`` (e.g. ``torchvision:IMAGENET1K_V1``).
    * ``head``: ``auto`` (a new head when the class count differs), ``new`` or ``keep``.
    * ``channel_adapt``: how the first conv follows a different input channel count.
    * ``bn``: ``freeze`` keeps the BatchNorm layers of frozen stages in eval mode with fixed
      affine parameters; ``train`` lets them train (Lightning's default).
    * ``backbone_lr_factor``: the backbone's learning rate relative to the head's (for
      ``gradual``: at the unfreeze epoch, then multiplied by ``lr_growth`` each epoch up to
      the head's rate).
    """

    name: str = param("scratch", choices=POLICIES)
    source: str | None = None
    head: str = param("auto", choices=("auto", "new", "keep"))
    channel_adapt: str = param("sum", choices=("sum", "mean"))
    freeze_until: Any = None
    bn: str = param("freeze", choices=("freeze", "train"))
    backbone_lr_factor: float = param(1.0, gt=0)
    unfreeze_at_epoch: int = param(5, ge=1)
    lr_growth: float = param(1.5, ge=1)
    download: bool = True

    def check(self, key: str) -> None:
        if self.name != "scratch" and not self.source:
            raise ConfigError(
                f"{key}.source",
                self.source,
                f"{key}={self.name} needs a source: a dlexp run directory, a .ckpt file or "
                f"{TORCHVISION_PREFIX}<weights name>",
            )
        if self.name == "freeze_stages" and self.freeze_until is None:
            raise ConfigError(
                f"{key}.freeze_until",
                None,
                "is required by transfer=freeze_stages: a stage index "
                "or the name of a top-level module of the model's backbone",
            )
        value = self.freeze_until
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise ConfigError(
                f"{key}.freeze_until", value, "must be a stage index or a backbone module name"
            )
        local = self.source and self.name != "scratch" and not is_torchvision(self.source)
        if local and not Path(self.source).expanduser().exists():
            raise ConfigError(
                f"{key}.source",
                self.source,
                "no such file or directory (a dlexp run directory, a .ckpt file, or "
                f"{TORCHVISION_PREFIX}<weights name>)",
            )


def is_torchvision(source: str) -> bool:
    """Whether ``source`` names torchvision's pretrained weights (``torchvision:<name>``)."""
    return source.startswith(TORCHVISION_PREFIX)

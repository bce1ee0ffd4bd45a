"""The ``augment`` group's schema (``dlexp/conf/augment/*.yaml``): training-split augmentation.

The options (``none``, ``basic``, ``standard``, ``strong``) are levels that set these keys;
:mod:`dlexp.data.augment` builds the transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError

AUGMENT_LEVELS = ("none", "basic", "standard", "strong")
FLIP_MODES = ("random", "alternate")


@dataclass
class AugmentConfig:
    """Per-image transforms, then batch-level mixing (training split only).

    ``flip_mode``: ``random`` mirrors each image with p = 0.5 afresh every epoch;
    ``alternate`` (airbench's) mirrors a random half of the images (drawn once, from the
    seed) on even epochs and exactly the other half on odd ones (``data.loader=memory``).
    """

    name: str = MISSING
    crop_padding: float = param(0.0, ge=0, le=0.5)  # fraction of the image size; 0 = off
    flip: bool = False  # horizontal flip (p = 0.5) where the dataset allows it
    flip_mode: str = param("random", choices=FLIP_MODES)
    affine_degrees: float = param(0.0, ge=0, le=180)  # random rotation in [-d, d]
    affine_scale: list[float] = param(factory=lambda: [1.0, 1.0], gt=0, each=True)
    erasing: float = param(0.0, ge=0, le=1)  # probability of random erasing (cutout)
    mixup_alpha: float = param(0.0, ge=0)  # Beta(alpha, alpha) mixing weight; 0 = off
    cutmix_alpha: float = param(0.0, ge=0)

    def check(self, key: str) -> None:
        lo_hi = list(self.affine_scale)
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            raise ConfigError(f"{key}.affine_scale", lo_hi, "must be [low, high] with low <= high")
        if self.flip_mode != "random" and not self.flip:
            raise ConfigError(f"{key}.flip_mode", self.flip_mode, f"needs {key}.flip=true")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

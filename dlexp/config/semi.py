"""The ``semi`` group (``dlexp/conf/semi/*.yaml``): learning from unlabeled images.

``none`` trains on the labeled training split only. ``pseudo_label`` (self-training, Lee
2013, with FixMatch's confidence mask) keeps ``labels_per_class`` labeled images of each
class (a stratified subset drawn from ``seed``); the rest of the training split becomes
unlabeled, its labels dropped when the split is made. Each step adds to the labeled batch's
loss ``w(t)`` x the cross-entropy of the unlabeled images against the model's own most
likely class, counted only where that class's probability reaches ``threshold``. The
training code is :mod:`dlexp.pseudo_label`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from dlexp.config.data import DataConfig
from dlexp.config.fields import param
from dlexp.errors import ConfigError


@dataclass
class SemiConfig:
    name: str = MISSING

    def check_against(self, data: DataConfig, key: str) -> None:
        """Rules involving the ``data`` group: checked before anything is loaded."""


@dataclass
class NoSemiConfig(SemiConfig):
    name: str = "none"


@dataclass
class PseudoLabelConfig(SemiConfig):
    """Pseudo-labelling of the training split's unlabeled rest.

    ``weight``: the unlabeled loss's weight after the ramp-up (0: supervised only, on the
    same labeled subset and the same steps). ``rampup_epochs``: the weight rises as
    ``weight * exp(-5 (1 - t/rampup_epochs)^2)`` over that many epochs (Laine & Aila
    2017), then stays. ``unlabeled_ratio``: unlabeled images per labeled one in a step
    (FixMatch's mu); an epoch is one pass over the unlabeled images, the labeled subset
    drawn again as often as it takes.
    """

    name: str = "pseudo_label"
    labels_per_class: int = param(10, ge=1)
    threshold: float = param(0.95, gt=0, le=1)
    weight: float = param(1.0, ge=0)
    rampup_epochs: float = param(5.0, ge=0)
    unlabeled_ratio: int = param(1, ge=1)

    def check_against(self, data: DataConfig, key: str) -> None:
        """``labels_per_class`` leaves unlabeled images in every class, as far as the
        dataset's class sizes are known without loading it (the split checks the rest)."""
        counts = list(data.train_class_counts)
        if counts and data.classes is not None:
            counts = [counts[c] for c in data.classes if c < len(counts)]
        if not counts:
            return
        kept = int(min(counts) * (1 - data.val_fraction - getattr(data, "test_fraction", 0)))
        if data.train_samples_per_class is not None:
            kept = min(kept, data.train_samples_per_class)
        if self.labels_per_class >= kept:
            raise ConfigError(
                f"{key}.labels_per_class",
                self.labels_per_class,
                f"must be < {kept}, about the training images of the smallest class of "
                f"{data.name} after the held-out splits (the rest of each class is unlabeled)",
            )


SEMI_SCHEMAS: dict[str, type[SemiConfig]] = {
    "none": NoSemiConfig,
    "pseudo_label": PseudoLabelConfig,
}

"""scikit-learn's handwritten digits (1,797 images of 8x8 px), shipped with the package."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlexp.data.base import DataConfig, ImageDataModule, RawData, Split, stratified_split
from dlexp.data.registry import register_data
from dlexp.errors import ConfigError
from dlexp.schema import param


@dataclass
class DigitsConfig(DataConfig):
    image_size: int | None = param(32, ge=8)
    val_fraction: float = param(0.15, gt=0, lt=1)
    test_fraction: float = param(0.15, gt=0, lt=1)

    def check(self, key: str) -> None:
        super().check(key)
        total = self.val_fraction + self.test_fraction
        if total >= 0.9:
            raise ConfigError(
                f"{key}.val_fraction+{key}.test_fraction",
                round(total, 6),
                "must be < 0.9 so that at least 10% of the data is left for training",
            )


@register_data("digits", DigitsConfig)
class DigitsDataModule(ImageDataModule):
    """Digits upsampled from 8x8 to ``data.image_size`` (default 32); test carved from data."""

    native_size = 8

    def load(self) -> RawData:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # Nx1x8x8 in [0, 1]
        images = (x * 255).round().to(torch.uint8)
        labels = torch.from_numpy(digits.target).long()
        return RawData(Split(images, labels), None, 10, [str(i) for i in range(10)])

    def carve_test(self, train: Split) -> tuple[Split, Split]:
        return stratified_split(train, self.cfg.test_fraction, self.seed)

    def val_share(self) -> float:
        # data.val_fraction is a fraction of the whole set; val is carved after test.
        return self.cfg.val_fraction / (1 - self.cfg.test_fraction)

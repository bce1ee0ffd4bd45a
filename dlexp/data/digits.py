"""scikit-learn's handwritten digits (1,797 images of 8x8 px), shipped with the package."""

from __future__ import annotations

import torch

from dlexp.data.base import ImageDataModule, RawData, Split, stratified_split
from dlexp.data.registry import register_data


@register_data("digits")
class DigitsDataModule(ImageDataModule):
    """Digits upsampled from 8x8 to ``data.image_size`` (default 32); test carved from data."""

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

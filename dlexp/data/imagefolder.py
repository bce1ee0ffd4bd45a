"""A user's own images: one sub-folder per class (torchvision's ``ImageFolder`` layout).

Every image (which files count and how they are decoded: :mod:`dlexp.images`, the rules
``dlexp predict`` follows too) is decoded once, converted to ``data.channels`` channels,
resized so that its shorter side is ``data.image_size`` and centre-cropped to a square, and
held in memory as uint8 like every other dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dlexp.data.base import ImageDataModule, RawData, Split, stratified_split
from dlexp.data.registry import register_data
from dlexp.data_files import check_image_folder
from dlexp.errors import ConfigError, InputError
from dlexp.images import IMAGE_SUFFIXES, ImageError, class_folders, find_images, load_image


@register_data("imagefolder")
class ImageFolderDataModule(ImageDataModule):
    """``data.root`` (and optionally ``data.test_root``) in the ImageFolder layout.

    Without ``data.test_root`` both fractions are of the whole folder (as for digits);
    with it, ``data.val_fraction`` is carved from ``data.root``.
    """

    reuse_loads = False  # a folder's images may change between the jobs of a sweep

    def load(self) -> RawData:
        train, classes = self._read("data.root", self.cfg.root)
        test = None
        if self.cfg.test_root is not None:
            test, test_classes = self._read("data.test_root", self.cfg.test_root)
            if test_classes != classes:
                raise InputError(
                    f"data.test_root={self.cfg.test_root}: its class folders "
                    f"({', '.join(test_classes)}) differ from data.root's ({', '.join(classes)})"
                )
        return RawData(train, test, len(classes), classes)

    def carve_test(self, train: Split) -> tuple[Split, Split]:
        return stratified_split(train, self.cfg.test_fraction, self.seed)

    def val_share(self) -> float:
        if self.cfg.test_root is not None:
            return self.cfg.val_fraction
        return self.cfg.val_fraction / (1 - self.cfg.test_fraction)

    def _read(self, key: str, root: str) -> tuple[Split, list[str]]:
        """Every image of ``root``'s class folders, read by :mod:`dlexp.images`'s rules."""
        try:
            check_image_folder(key, root)  # two or more class folders, as the config check
        except ConfigError as exc:
            raise InputError(str(exc)) from None
        folder = Path(root).expanduser()
        classes = class_folders(folder)
        try:
            per_class = find_images([folder / name for name in classes])
        except ImageError as exc:
            raise InputError(f"{key}={root}: {exc}") from None
        empty = [name for name, files in zip(classes, per_class, strict=True) if not files]
        if empty:
            raise InputError(
                f"{key}={root}: no images in the class folder(s) {', '.join(empty)} "
                f"(images are files ending in {', '.join(IMAGE_SUFFIXES)})"
            )
        images, labels = [], []
        for label, files in enumerate(per_class):
            for path in files:
                try:
                    images.append(load_image(path, self.cfg.channels, self.cfg.image_size))
                except ImageError as exc:
                    raise InputError(f"{key}={root}: {exc}") from None
                labels.append(label)
        return Split(torch.stack(images), torch.tensor(labels, dtype=torch.long)), classes

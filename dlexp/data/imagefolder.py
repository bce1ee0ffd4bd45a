"""A user's own images: one sub-folder per class (torchvision's ``ImageFolder`` layout).

Every image is decoded once, converted to ``data.channels`` channels, resized so that its
shorter side is ``data.image_size`` and centre-cropped to a square, and held in memory as
uint8 like every other dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dlexp.data.base import ImageDataModule, RawData, Split, stratified_split
from dlexp.data.registry import register_data
from dlexp.data.torchvision_sets import one_line
from dlexp.data_files import check_image_folder
from dlexp.errors import ConfigError, InputError


@register_data("imagefolder")
class ImageFolderDataModule(ImageDataModule):
    """``data.root`` (and optionally ``data.test_root``) in the ImageFolder layout.

    Without ``data.test_root`` both fractions are of the whole folder (as for digits);
    with it, ``data.val_fraction`` is carved from ``data.root``.
    """

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
        from torchvision.datasets import ImageFolder

        try:
            check_image_folder(key, root)  # a folder with class sub-folders, as the config check
        except ConfigError as exc:
            raise InputError(str(exc)) from None
        folder = Path(root).expanduser()
        try:
            dataset = ImageFolder(str(folder), loader=self._loader_for_file)
        except (FileNotFoundError, OSError) as exc:  # no class folders, or no images in them
            raise InputError(f"{key}={root}: {one_line(exc)}") from None
        images, labels = [], []
        for path, label in dataset.samples:
            try:
                images.append(dataset.loader(path))
            except OSError as exc:
                raise InputError(f"{key}={root}: cannot read {path}: {one_line(exc)}") from None
            labels.append(label)
        return Split(torch.stack(images), torch.tensor(labels, dtype=torch.long)), dataset.classes

    def _loader_for_file(self, path: str) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import v2

        size = self.cfg.image_size
        with Image.open(path) as img:
            image = v2.functional.pil_to_tensor(
                img.convert("L" if self.cfg.channels == 1 else "RGB")
            )
        image = v2.functional.resize(image, size, antialias=True)
        return v2.functional.center_crop(image, [size, size])

"""torchvision's MNIST-style datasets (IDX files), read into memory from ``data.root``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlexp.data.base import ImageDataModule, RawData, Split
from dlexp.data.idx import read_idx_split
from dlexp.data.registry import register_data
from dlexp.data_files import (
    LAYOUTS,
    DataLayout,
    data_folder,
    find_file,
    missing_files,
    missing_text,
)
from dlexp.errors import InputError


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset with an official train/test split (MNIST-style by default).

    The IDX files are read by dlexp (:mod:`dlexp.data.idx`), from the ``.gz`` or the
    extracted file, in memory: files that are there are never written to, so a read-only
    ``data.root`` works. torchvision is used only to download missing files
    (``data.download=true``).
    """

    dataset_cls_name: str = ""

    def dataset_cls(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.dataset_cls_name)

    @property
    def layout(self) -> DataLayout:
        return LAYOUTS[self.cfg.name]

    @property
    def expected_files(self) -> tuple[str, ...]:
        return self.layout.files

    def raw_folder(self) -> Path:
        return data_folder(self.cfg.name, self.cfg.root)

    def source_files(self) -> list[Path]:
        folder = self.raw_folder()
        return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []

    def missing_error(self, why: str) -> InputError:
        return InputError(
            f"data.root={self.cfg.root}: {missing_text(self.cfg.name, self.cfg.root, why)}"
        )

    def _download(self) -> None:
        """Fetch the missing files with torchvision (it also extracts them beside the .gz)."""
        if not self.cfg.download:
            raise self.missing_error("download is off (data.download=false)")
        root = str(Path(self.cfg.root).expanduser())
        try:
            for train in (True, False):
                self.dataset_cls()(root, train=train, download=True)
        except Exception as exc:  # offline, unwritable root, corrupt file …
            raise self.missing_error(f"download failed: {one_line(exc)}") from None

    def load(self) -> RawData:
        if missing_files(self.cfg.name, self.cfg.root):
            self._download()
        folder, gz = self.raw_folder(), self.layout.gz_optional
        classes = list(self.dataset_cls().classes)  # a class attribute: no instance, no files

        def split(prefix: str) -> Split:
            images_file = find_file(folder, f"{prefix}-images-idx3-ubyte.gz", gz)
            labels_file = find_file(folder, f"{prefix}-labels-idx1-ubyte.gz", gz)
            images, labels = read_idx_split(images_file, labels_file)
            if labels.size and int(labels.max()) >= len(classes):
                raise InputError(
                    f"{labels_file}: label {int(labels.max())} is not one of the {len(classes)} "
                    f"{self.dataset_cls_name} classes (0 to {len(classes) - 1})"
                )
            return Split(
                torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
            )

        return RawData(split("train"), split("t10k"), len(classes), classes)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@register_data("mnist")
class MNISTDataModule(TorchvisionDataModule):
    dataset_cls_name = "MNIST"


@register_data("fashion_mnist")
class FashionMNISTDataModule(TorchvisionDataModule):
    dataset_cls_name = "FashionMNIST"


@register_data("kmnist")
class KMNISTDataModule(TorchvisionDataModule):
    """Kuzushiji-MNIST: ten cursive Japanese (hiragana) characters, 28x28 px."""

    dataset_cls_name = "KMNIST"

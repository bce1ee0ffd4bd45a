"""torchvision's MNIST-style datasets, read into memory from ``data.root``."""

from __future__ import annotations

from pathlib import Path

import torch

from dlexp.data.base import ImageDataModule, RawData, Split
from dlexp.data.registry import register_data
from dlexp.errors import InputError


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset with an official train/test split (MNIST-style by default)."""

    dataset_cls_name: str = ""
    expected_files: tuple[str, ...] = ()

    def dataset_cls(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.dataset_cls_name)

    def raw_folder(self) -> Path:
        return Path(self.cfg.root).expanduser() / self.dataset_cls_name / "raw"

    def _open(self, train: bool):
        cls = self.dataset_cls()
        root = str(Path(self.cfg.root).expanduser())
        try:
            return cls(root, train=train, download=False)
        except RuntimeError:
            if not self.cfg.download:
                raise self.missing_error("download is off (data.download=false)") from None
        try:
            return cls(root, train=train, download=True)
        except Exception as exc:  # offline, unwritable root, corrupt file …
            raise self.missing_error(f"download failed: {one_line(exc)}") from None

    def expected_text(self) -> str:
        """The files :meth:`missing_error` says it looked for."""
        return f"{', '.join(self.expected_files)}, or the same without .gz"

    def missing_error(self, why: str) -> InputError:
        return InputError(
            f"data.root={self.cfg.root}: {self.dataset_cls_name} not found in {self.raw_folder()} "
            f"(expected {self.expected_text()}) and {why}"
        )

    def load(self) -> RawData:
        train, test = self._open(True), self._open(False)

        def split(ds) -> Split:
            return Split(torch.as_tensor(ds.data).unsqueeze(1), torch.as_tensor(ds.targets).long())

        return RawData(split(train), split(test), len(train.classes), list(train.classes))


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@register_data("mnist")
class MNISTDataModule(TorchvisionDataModule):
    dataset_cls_name = "MNIST"
    expected_files = _MNIST_FILES


@register_data("fashion_mnist")
class FashionMNISTDataModule(TorchvisionDataModule):
    dataset_cls_name = "FashionMNIST"
    expected_files = _MNIST_FILES


@register_data("kmnist")
class KMNISTDataModule(TorchvisionDataModule):
    """Kuzushiji-MNIST: ten cursive Japanese (hiragana) characters, 28x28 px."""

    dataset_cls_name = "KMNIST"
    expected_files = _MNIST_FILES

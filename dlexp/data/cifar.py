"""CIFAR-10 and CIFAR-100 (32x32 colour images), read from the official python batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from dlexp.data.base import RawData, Split
from dlexp.data.checked_files import CheckedFilesDataModule
from dlexp.data.registry import register_data


class CIFARDataModule(CheckedFilesDataModule):
    """``<data.root>/cifar-10-batches-py`` (or ``cifar-100-python``), the official pickles.

    Each batch file is a pickled dict with ``data`` (N x 3072 uint8, channel-major rows of
    32x32) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100); the meta file names
    the classes.
    """

    def md5_sums(self) -> dict[str, str]:
        cls = self.dataset_cls()
        return {**dict(cls.train_list + cls.test_list), cls.meta["filename"]: cls.meta["md5"]}

    def fetch(self) -> None:
        self.dataset_cls()(str(Path(self.cfg.root).expanduser()), train=True, download=True)

    def read(self, folder: Path) -> RawData:
        cls = self.dataset_cls()

        def batches(names: list[str]) -> Split:
            images, labels = [], []
            for name in names:
                entry = _unpickle(folder / name)
                images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            return Split(
                torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)
            )

        train = batches([n for n, _ in cls.train_list])
        test = batches([n for n, _ in cls.test_list])
        names = [str(n) for n in _unpickle(folder / cls.meta["filename"])[cls.meta["key"]]]
        return RawData(train, test, len(names), names)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


@register_data("cifar10")
class CIFAR10DataModule(CIFARDataModule):
    dataset_cls_name = "CIFAR10"


@register_data("cifar100")
class CIFAR100DataModule(CIFARDataModule):
    dataset_cls_name = "CIFAR100"

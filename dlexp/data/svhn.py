"""SVHN: Street View House Numbers, 32x32 colour crops of digits (official train/test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlexp.data.base import RawData, Split
from dlexp.data.checked_files import CheckedFilesDataModule
from dlexp.data.registry import register_data


@register_data("svhn")
class SVHNDataModule(CheckedFilesDataModule):
    """``<data.root>/SVHN/{train,test}_32x32.mat`` (MATLAB files: ``X`` 32x32x3xN, ``y``).

    The files label the digit 0 as 10; here it is 0. Digits: never flipped.
    """

    dataset_cls_name = "SVHN"

    def md5_sums(self) -> dict[str, str]:
        return {name: md5 for _, name, md5 in self.dataset_cls().split_list.values()}

    def fetch(self) -> None:
        for split in ("train", "test"):
            self.dataset_cls()(str(self.raw_folder()), split=split, download=True)

    def read(self, folder: Path) -> RawData:
        from scipy.io import loadmat

        def split(name: str) -> Split:
            mat = loadmat(str(folder / name))
            images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)
            labels = torch.from_numpy(mat["y"].astype(np.int64).reshape(-1)) % 10
            return Split(torch.from_numpy(images), labels)

        train, test = (split(name) for name, _ in self.files())
        return RawData(train, test, 10, [str(i) for i in range(10)])

"""The base of every dataset: splits, training-split statistics and loaders.

A dataset subclass only loads its raw arrays (:meth:`ImageDataModule.load`). The base class
carves stratified, seeded validation (and, where the source has none, test) splits, resizes
to ``data.image_size``, fits the :class:`InputNormalizer` on the training split and serves
uint8 batches; normalization runs batched inside the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import MISSING
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from dlexp.data.normalize import NORMALIZATIONS, InputNormalizer
from dlexp.schema import param


@dataclass
class DataConfig:
    """Keys every dataset takes (``conf/data/*.yaml``)."""

    name: str = MISSING
    batch_size: int = param(64, ge=1)
    num_workers: int = param(0, ge=0)
    normalize: str = param("standardize", choices=NORMALIZATIONS)
    val_fraction: float = param(0.1, gt=0, lt=1)
    image_size: int | None = param(None, ge=1)


@dataclass
class Split:
    """Images (uint8, N×C×H×W) and integer labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> Split:
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(self.images[index], self.labels[index])


@dataclass
class RawData:
    """What a dataset's :meth:`load` returns; ``test`` is None when the source has none."""

    train: Split
    test: Split | None
    num_classes: int
    class_names: list[str]


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off ``fraction`` of ``split`` with the same class proportions, from ``seed``."""
    index = torch.arange(len(split))
    keep, take = train_test_split(
        index.numpy(), test_size=fraction, stratify=split.labels.numpy(), random_state=seed
    )
    return split.subset(sorted(keep)), split.subset(sorted(take))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a uint8 batch to ``size``×``size`` (antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class ImageDataModule(pl.LightningDataModule):
    """Base LightningDataModule for image classification sets held in memory."""

    native_size: int = 28

    def __init__(self, cfg: DataConfig, seed: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.train_split: Split | None = None
        self.val_split: Split | None = None
        self.test_split: Split | None = None
        self.normalizer: InputNormalizer | None = None
        self.num_classes = 0
        self.class_names: list[str] = []

    # -- to implement -------------------------------------------------------------------
    def load(self) -> RawData:
        """Return the source's train (and test, if it has one) split as uint8 tensors."""
        raise NotImplementedError

    # -- facts of the data ----------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.cfg.image_size or self.native_size

    @property
    def in_channels(self) -> int:
        self._require_setup()
        return int(self.train_split.images.shape[1])

    def carve_test(self, train: Split) -> tuple[Split, Split]:
        """Where the source has no test split: take one from train (overridden by digits)."""
        raise NotImplementedError(f"{type(self).__name__} has no test split")

    def val_share(self) -> float:
        """Fraction of the (test-less) training data that becomes the validation split."""
        return self.cfg.val_fraction

    # -- Lightning hooks ------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_split is not None:
            return
        raw = self.load()
        train, test = raw.train, raw.test
        if test is None:
            train, test = self.carve_test(train)
        train, val = stratified_split(train, self.val_share(), self.seed)
        size = self.image_size
        self.train_split, self.val_split, self.test_split = (
            Split(resize(s.images, size), s.labels) for s in (train, val, test)
        )
        self.num_classes, self.class_names = raw.num_classes, raw.class_names
        self.normalizer = InputNormalizer.fit(self.cfg.normalize, self.train_split.images)

    def _loader(self, split: Split, shuffle: bool) -> DataLoader:
        return DataLoader(
            TensorDataset(split.images, split.labels),
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_split, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, shuffle=False)

    def _require_setup(self) -> None:
        if self.train_split is None:
            raise RuntimeError("call setup() before asking for facts of the data")

"""The base of every dataset: splits, training-split statistics and loaders.

A dataset subclass only loads its raw arrays (:meth:`ImageDataModule.load`). The base class
carves stratified, seeded validation (and, where the source has none, test) splits, or with
``data.folds`` validates on one of k stratified folds of the training split, resizes
to ``data.image_size``, fits the :class:`InputNormalizer` on the training split and serves
uint8 batches; normalization runs batched inside the model's forward.

``data.loader`` picks how batches are served: ``memory`` (:mod:`dlexp.data.memory`: the
split as one tensor on the training device, batches gathered by index and augmented
batch-wise there) or ``dataloader`` (a ``torch.utils.data.DataLoader`` over the same
tensors, augmented per image, with ``data.num_workers`` worker processes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from dlexp.config.augment import AugmentConfig
from dlexp.config.data import DataConfig
from dlexp.config.semi import PseudoLabelConfig, SemiConfig
from dlexp.data.augment import (
    AugmentedImages,
    MixingCollate,
    alternates,
    batch_mix,
    batch_transform,
)
from dlexp.data.augment import image_transform as augment_transform
from dlexp.data.batch_augment import mirror_half
from dlexp.data.combined import LabeledAndUnlabeled
from dlexp.data.memory import MemoryBatches, drops_single_last
from dlexp.data.normalize import InputNormalizer
from dlexp.data.splits import (
    RawData,
    Split,
    fold_split,
    select_classes,
    split_unlabeled,
    stratified_split,
    subsample,
)
from dlexp.errors import InputError


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a uint8 batch to ``size``x``size`` (antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 ``(C, H, W)`` image resized so that its shorter side is ``size`` (as
    :func:`resize`), then centre-cropped to ``size``x``size``."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        out = F.interpolate(
            image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True,
            align_corners=False,
        )  # fmt: skip
        image = out.round_().clamp_(0, 255).to(torch.uint8)[0]
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)
    return image[..., top : top + size, left : left + size]


# The keys that shape the splits from the loaded data; a dataset's own keys (root, download,
# ...) say what it loads. Digits carves its test split from the whole set: test_fraction.
SPLIT_KEYS = frozenset(f.name for f in dataclasses.fields(DataConfig)) | {"test_fraction"}
_last_load: dict[tuple, RawData] = {}  # this process's last load: a sweep's jobs share it


class ImageDataModule(pl.LightningDataModule):
    """Base LightningDataModule for image classification sets held in memory.

    The dataset's facts (native size, channels, classes, whether a mirrored image keeps
    its label) come with its schema, ``cfg`` (:mod:`dlexp.config.data`). The jobs of a sweep
    in one process load the files once (``reuse_loads``; not for folders of images, which
    may change between jobs). With ``semi`` (:mod:`dlexp.config.semi`) the training split
    keeps a labeled subset and the rest becomes :attr:`unlabeled_split` (labels dropped).
    """

    reuse_loads: ClassVar[bool] = True

    def __init__(
        self,
        cfg: DataConfig,
        seed: int,
        augment: AugmentConfig | None = None,
        semi: SemiConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.augment = augment
        self.semi = semi
        self.unlabeled_split: Split | None = None  # images only: every label is -1
        self.train_split: Split | None = None
        self.val_split: Split | None = None
        self.test_split: Split | None = None
        self.normalizer: InputNormalizer | None = None
        self.num_classes = 0
        self.class_names: list[str] = []
        self._on_device: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- to implement -------------------------------------------------------------------
    def load(self) -> RawData:
        """Return the source's train (and test, if it has one) split as uint8 tensors."""
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """The files :meth:`load` reads (none for data shipped in a package)."""
        return []

    # -- facts of the data ----------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.cfg.shape().image_size

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
        """Load; keep ``data.classes``; carve test, then val (or ``data.fold``); subsample
        train; resize; fit stats.

        The order makes ``data.train_samples`` leave validation and test untouched, and the
        normalization statistics come from the training images actually used.
        """
        if self.train_split is not None:
            return
        raw = self._load_once()
        if self.cfg.classes is not None:
            raw = select_classes(raw, list(self.cfg.classes))
        train, test = raw.train, raw.test
        try:
            if test is None:
                train, test = self.carve_test(train)
            if self.cfg.folds is None:
                train, val = stratified_split(train, self.val_share(), self.seed)
        except ValueError as exc:  # e.g. a class with a single image
            raise InputError(f"data: cannot split the data by class: {exc}") from None
        if self.cfg.folds is not None:  # k-fold cross-validation: validate on one fold
            train, val = fold_split(train, self.cfg.folds, self.cfg.fold, self.seed)
        train = subsample(
            train,
            self.seed,
            total=self.cfg.train_samples,
            per_class=self.cfg.train_samples_per_class,
        )
        unlabeled = None
        if isinstance(self.semi, PseudoLabelConfig):
            train, unlabeled = split_unlabeled(train, self.seed, self.semi.labels_per_class)
            unlabeled = Split(resize(unlabeled.images, self.image_size), unlabeled.labels)
        size = self.image_size
        self.train_split, self.val_split, self.test_split = (
            Split(resize(s.images, size), s.labels) for s in (train, val, test)
        )
        self.unlabeled_split = unlabeled
        self.num_classes, self.class_names = raw.num_classes, raw.class_names
        fit_on = self.train_split.images  # every training image, labeled or not
        if unlabeled is not None:
            fit_on = torch.cat([fit_on, unlabeled.images])
        self.normalizer = InputNormalizer.fit(self.cfg.normalize, fit_on)

    def _load_once(self) -> RawData:
        """:meth:`load`, or the last load of this process if it read the same files, unchanged
        since (same size and modification time)."""
        if not self.reuse_loads:
            return self.load()
        reads = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in SPLIT_KEYS}
        files = []
        for path in sorted(self.source_files()):
            st = path.stat()
            files.append((str(path), st.st_size, st.st_mtime_ns))
        key = (type(self), repr(sorted(reads.items())), tuple(files))
        if key not in _last_load:
            _last_load.clear()  # one dataset kept, not one per job
            _last_load[key] = self.load()
        return _last_load[key]

    def _loader(
        self, dataset, shuffle: bool, collate_fn=None, batch_size: int = 0, samples: int = 0
    ) -> DataLoader:
        """Batches of ``dataset``; a shuffled (training) epoch drops a last batch of one sample
        (:func:`drops_single_last`; under DDP counted per rank, as its sampler shards).
        ``samples``: an epoch of that many (consecutive shuffles of ``dataset``)."""
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        batch_size = batch_size or self.cfg.batch_size
        per_rank = -(-(samples or len(dataset)) // world)
        sampler = RandomSampler(dataset, num_samples=samples) if samples else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and drops_single_last(per_rank, batch_size),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            collate_fn=collate_fn,
        )

    def _in_memory(
        self, split: Split, train: bool, mix: bool = True, batch_size: int = 0, samples: int = 0
    ) -> MemoryBatches:
        """``split`` on the training device, served by index (``data.loader=memory``).

        For the alternating flip, the training images are held with a random half of them
        mirrored (:func:`~dlexp.data.batch_augment.mirror_half`). ``mix``: MixUp/CutMix
        the training batches; ``batch_size``/``samples`` as :meth:`_loader`.
        """
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        mirrored = train and alternates(self.augment, self.cfg.flip_ok)
        key = (id(split), str(device), mirrored)
        if key not in self._on_device:
            images = split.images.to(device)
            self._on_device[key] = (
                mirror_half(images, self.seed) if mirrored else images,
                split.labels.to(device),
            )
        images, labels = self._on_device[key]
        batches = MemoryBatches(
            images,
            labels,
            batch_size or self.cfg.batch_size,
            shuffle=train,
            seed=self.seed + (split is self.unlabeled_split),  # its own order
            samples=samples,
            mix=batch_mix(self.augment, self.num_classes) if train and mix else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )
        if train:  # the alternating flip reads the epoch from the loader's own EpochSeed
            batches.augment = batch_transform(
                self.augment, self.image_size, self.cfg.flip_ok, epochs=batches.sampler
            )
        return batches

    def train_dataloader(self) -> DataLoader | MemoryBatches | LabeledAndUnlabeled:
        """Training batches, augmented by ``augment`` (per image, then per batch); with an
        unlabeled split, each labeled batch comes with a batch of its unlabeled images
        (``semi.unlabeled_ratio`` times as many, the same augmentation, no MixUp/CutMix)."""
        if self.unlabeled_split is None:
            return self._train_batches(self.train_split)
        size = self.cfg.batch_size * self.semi.unlabeled_ratio
        unlabeled = self._train_batches(self.unlabeled_split, mix=False, batch_size=size)
        labeled = self._train_batches(
            self.train_split, samples=len(unlabeled) * self.cfg.batch_size
        )
        return LabeledAndUnlabeled(labeled, unlabeled)

    def _train_batches(
        self, split: Split, mix: bool = True, batch_size: int = 0, samples: int = 0
    ) -> DataLoader | MemoryBatches:
        if self.cfg.loader == "memory":
            return self._in_memory(split, True, mix, batch_size, samples)
        transform = augment_transform(self.augment, self.image_size, self.cfg.flip_ok)
        dataset = (
            AugmentedImages(split.images, split.labels, transform)
            if transform is not None
            else TensorDataset(split.images, split.labels)
        )
        mixing = batch_mix(self.augment, self.num_classes) if mix else None
        collate = MixingCollate(mixing) if mixing else None
        return self._loader(dataset, True, collate, batch_size, samples)

    def val_dataloader(self) -> DataLoader | MemoryBatches:
        if self.cfg.loader == "memory":
            return self._in_memory(self.val_split, train=False)
        return self._loader(TensorDataset(self.val_split.images, self.val_split.labels), False)

    def test_dataloader(self) -> DataLoader | MemoryBatches:
        if self.cfg.loader == "memory":
            return self._in_memory(self.test_split, train=False)
        return self._loader(TensorDataset(self.test_split.images, self.test_split.labels), False)

    def _require_setup(self) -> None:
        if self.train_split is None:
            raise RuntimeError("call setup() before asking for facts of the data")

"""The ``data`` group's schemas (``dlexp/conf/data/*.yaml``): one dataclass per dataset.

Each schema carries its dataset's facts as class variables (native image size, channels,
classes, whether a mirrored image keeps its label), so a config can be checked against a
model without loading anything. The datamodules that consume them live in ``dlexp/data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError

LOADERS = ("memory", "dataloader")
NORMALIZATIONS = ("standardize", "minmax", "none")


@dataclass(frozen=True)
class DataShape:
    """What a model is built for: image channels, image size (px) and number of classes."""

    in_channels: int
    image_size: int
    num_classes: int


@dataclass
class DataConfig:
    """Keys every dataset takes.

    ``loader``: ``memory`` serves the split as one tensor on the training device,
    ``dataloader`` a torch DataLoader with ``num_workers`` worker processes.
    ``normalize``: input statistics of the training split (``standardize``: mean/std per
    channel, ``minmax``: to [0, 1], ``none``: raw [0, 1] pixels).
    ``folds``/``fold``: k-fold cross-validation: the training split (what is left after the
    test split) in ``folds`` stratified folds drawn from ``seed``; fold ``fold`` validates, the
    others train (``val_fraction`` is then unused). ``-m data.fold=all`` runs every fold.
    """

    native_size: ClassVar[int] = 28
    native_channels: ClassVar[int] = 1
    native_num_classes: ClassVar[int] = 10
    flip_ok: ClassVar[bool] = False  # whether a mirrored image keeps its label
    # images of each class in the source's training files (empty: unknown before loading)
    train_class_counts: ClassVar[tuple[int, ...]] = ()

    name: str = MISSING
    batch_size: int = param(128, ge=1)
    loader: str = param("memory", choices=LOADERS)
    num_workers: int = param(0, ge=0)  # DataLoader workers; unused by loader=memory
    normalize: str = param("standardize", choices=NORMALIZATIONS)
    val_fraction: float = param(0.1, gt=0, lt=1)  # carved from the training split
    image_size: int | None = param(None, ge=1)  # null: the dataset's own size
    classes: list[int] | None = param(None, ge=0, each=True)  # keep only these classes
    train_samples: int | None = param(None, ge=1)  # subsample the training split
    train_samples_per_class: int | None = param(None, ge=1)
    folds: int | None = param(None, ge=2)  # k-fold cross-validation: k folds of the train split
    fold: int | None = param(None, ge=0)  # the fold validated on; the other folds train

    def check(self, key: str) -> None:
        _check_folds(self, key)
        if self.classes is not None and (
            len(self.classes) < 2 or len(set(self.classes)) != len(self.classes)
        ):
            raise ConfigError(
                f"{key}.classes", list(self.classes), "must list two or more distinct class indices"
            )
        known = self.native_num_classes  # 0: known only from the files (imagefolder)
        if self.classes is not None and known and max(self.classes) >= known:
            raise ConfigError(
                f"{key}.classes",
                list(self.classes),
                f"must be class indices of {self.name}: 0 to {self.native_num_classes - 1}",
            )
        if self.train_samples is not None and self.train_samples_per_class is not None:
            raise ConfigError(
                f"{key}.train_samples_per_class",
                self.train_samples_per_class,
                f"cannot be combined with {key}.train_samples (set one, the other null)",
            )

    def shape(self) -> DataShape:
        """The shape this config gives, known without loading (or downloading) anything."""
        classes = len(self.classes) if self.classes is not None else self.native_num_classes
        return DataShape(self.native_channels, self.image_size or self.native_size, classes)


def _check_folds(cfg: DataConfig, key: str) -> None:
    if cfg.fold is not None and cfg.folds is None:
        raise ConfigError(f"{key}.fold", cfg.fold, f"needs {key}.folds=<k>, the number of folds")
    if cfg.folds is not None and cfg.fold is None:
        raise ConfigError(
            f"{key}.folds",
            cfg.folds,
            f"needs {key}.fold=<0..{cfg.folds - 1}>, the fold to validate on "
            f"(or -m {key}.fold=all: one job per fold)",
        )
    if cfg.folds is not None and cfg.fold >= cfg.folds:
        raise ConfigError(
            f"{key}.fold", cfg.fold, f"must be < {key}.folds={cfg.folds}: 0 to {cfg.folds - 1}"
        )


def _check_fractions(cfg: DataConfig, key: str, what: str) -> None:
    total = cfg.val_fraction + cfg.test_fraction
    if total >= 0.9:
        raise ConfigError(
            f"{key}.val_fraction+{key}.test_fraction",
            round(total, 6),
            f"must be < 0.9 so that at least 10% of the {what} is left for training",
        )


@dataclass
class DigitsConfig(DataConfig):
    """scikit-learn's handwritten digits: 1,797 images of 8x8 px, upsampled to 32 px.

    It has no test split: ``val_fraction`` and ``test_fraction`` are of the whole set.
    """

    native_size: ClassVar[int] = 8
    train_class_counts: ClassVar[tuple[int, ...]] = (
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180,
    )  # fmt: skip

    name: str = "digits"
    batch_size: int = param(64, ge=1)
    image_size: int | None = param(32, ge=8)
    val_fraction: float = param(0.15, gt=0, lt=1)
    test_fraction: float = param(0.15, gt=0, lt=1)

    def check(self, key: str) -> None:
        super().check(key)
        _check_fractions(self, key, "data")


@dataclass
class DownloadedDataConfig(DataConfig):
    """A dataset read from its official files in ``root`` (fetched when missing and
    ``download`` is on)."""

    root: str = "data"
    download: bool = True


@dataclass
class MNISTConfig(DownloadedDataConfig):
    """MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28 px."""

    train_class_counts: ClassVar[tuple[int, ...]] = (
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    )  # fmt: skip
    name: str = "mnist"


@dataclass
class FashionMNISTConfig(DownloadedDataConfig):
    """Fashion-MNIST: ten kinds of clothing, 28x28 px, MNIST's split sizes."""

    train_class_counts: ClassVar[tuple[int, ...]] = (6000,) * 10
    name: str = "fashion_mnist"


@dataclass
class KMNISTConfig(DownloadedDataConfig):
    """Kuzushiji-MNIST: ten cursive Japanese (hiragana) characters, 28x28 px."""

    train_class_counts: ClassVar[tuple[int, ...]] = (6000,) * 10
    name: str = "kmnist"


@dataclass
class VerifiedDataConfig(DownloadedDataConfig):
    """Official files checked against their md5 sums (``verify_md5=false`` reads files in
    the official layout that are not the official bytes)."""

    native_size: ClassVar[int] = 32
    native_channels: ClassVar[int] = 3
    verify_md5: bool = True


@dataclass
class CIFAR10Config(VerifiedDataConfig):
    """CIFAR-10: 50,000 training and 10,000 test colour images of 32x32 px, 10 classes."""

    flip_ok: ClassVar[bool] = True
    train_class_counts: ClassVar[tuple[int, ...]] = (5000,) * 10
    name: str = "cifar10"


@dataclass
class CIFAR100Config(VerifiedDataConfig):
    """CIFAR-100: CIFAR-10's images and sizes with 100 fine classes."""

    native_num_classes: ClassVar[int] = 100
    flip_ok: ClassVar[bool] = True
    train_class_counts: ClassVar[tuple[int, ...]] = (500,) * 100
    name: str = "cifar100"


@dataclass
class SVHNConfig(VerifiedDataConfig):
    """Street View House Numbers: 73,257 training and 26,032 test digits, 32x32 px."""

    name: str = "svhn"


@dataclass
class ImageFolderConfig(DataConfig):
    """A user's own images: ``root/<class name>/<image files>`` (torchvision's layout).

    Without ``test_root`` both fractions are of the whole folder; with it,
    ``val_fraction`` is carved from ``root``. Images are resized so that their shorter
    side is ``image_size`` and centre-cropped.
    """

    native_num_classes: ClassVar[int] = 0

    name: str = "imagefolder"
    root: str = MISSING
    test_root: str | None = None
    batch_size: int = param(64, ge=1)
    image_size: int = param(64, ge=8)
    loader: str = param("dataloader", choices=LOADERS)  # a folder may not fit in memory
    channels: int = param(3, choices=(1, 3))  # 1 = greyscale, 3 = RGB
    flip_ok: bool = True  # false where a mirrored image changes its class (text, digits …)
    val_fraction: float = param(0.15, gt=0, lt=1)
    test_fraction: float = param(0.15, gt=0, lt=1)  # only without test_root

    def check(self, key: str) -> None:
        DataConfig.check(self, key)
        if self.test_root is None:
            _check_fractions(self, key, "images")

    def shape(self) -> DataShape:
        """Channels and size from the config; classes from the sub-folders of ``root``."""
        if self.classes is not None:
            classes = len(self.classes)
        else:
            from dlexp.images import class_folders  # the rules training reads them by

            try:
                classes = len(class_folders(Path(self.root).expanduser()))
            except OSError:  # no such folder: the file check says so
                classes = 0
        return DataShape(self.channels, self.image_size, classes)


DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    schema.name: schema
    for schema in (
        DigitsConfig,
        MNISTConfig,
        FashionMNISTConfig,
        KMNISTConfig,
        CIFAR10Config,
        CIFAR100Config,
        SVHNConfig,
        ImageFolderConfig,
    )
}

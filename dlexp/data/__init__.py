"""Datasets: one LightningDataModule per source, registered under its config name."""

from dlexp.data import (  # noqa: F401  (registers the datasets)
    cifar,
    digits,
    imagefolder,
    svhn,
    torchvision_sets,
)
from dlexp.data.base import ImageDataModule
from dlexp.data.registry import DATASETS, build_datamodule, register_data

__all__ = ["DATASETS", "ImageDataModule", "build_datamodule", "register_data"]

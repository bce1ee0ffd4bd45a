"""Training-set augmentation (``dlexp/conf/augment/*.yaml``) on ``torchvision.transforms.v2``.

Two kinds, both for the training split only:

* per-image transforms (:func:`image_transform`; batched on the device for the in-memory
  data path: :func:`batch_transform`) on the uint8 CxHxW tensors held in memory: random
  crop with zero padding, horizontal flip (only where the dataset says flipping keeps the
  label: never for digits, MNIST-style sets or house numbers; at random, or on alternate
  epochs with ``flip_mode: alternate``), a small
  random affine (rotation and scale), random erasing (cutout). Images stay uint8; the
  model's input layer normalizes them.
* batch-level mixing (:class:`BatchMix`): MixUp and/or CutMix on whole batches, giving
  soft (N x classes) targets. Mixed images are float in [0, 1], which the model's input
  layer reads as it reads uint8 / 255.

This module is the one home of every augmentation definition, for any data path.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from dlexp.config.augment import AugmentConfig

log = logging.getLogger(__name__)


def image_transform(cfg: AugmentConfig | None, image_size: int, flip_ok: bool):
    """The per-image transform of ``cfg`` for ``image_size`` px images (None: nothing to do)."""
    if cfg is None:
        return None
    steps: list[v2.Transform] = []
    if cfg.crop_padding > 0:
        padding = max(1, round(cfg.crop_padding * image_size))
        steps.append(v2.RandomCrop(image_size, padding=padding, fill=0))
    if cfg.flip and flip_ok:
        steps.append(v2.RandomHorizontalFlip())
    elif cfg.flip:
        log.info("augment.flip: off for this dataset (a flipped image may change its class)")
    if cfg.affine_degrees > 0 or list(cfg.affine_scale) != [1.0, 1.0]:
        steps.append(v2.RandomAffine(degrees=cfg.affine_degrees, scale=tuple(cfg.affine_scale)))
    if cfg.erasing > 0:
        steps.append(v2.RandomErasing(p=cfg.erasing, value=0))
    return v2.Compose(steps) if steps else None


def alternates(cfg: AugmentConfig | None, flip_ok: bool) -> bool:
    """Whether ``cfg`` flips the images on alternate epochs (``augment.flip_mode=alternate``)."""
    return cfg is not None and cfg.flip and flip_ok and cfg.flip_mode == "alternate"


def batch_transform(cfg: AugmentConfig | None, image_size: int, flip_ok: bool, epochs=None):
    """The per-image steps of ``cfg`` as one batched transform (the in-memory data path).

    Draws the same distribution as :func:`image_transform`, step for step (see
    :mod:`dlexp.data.batch_augment`); None when there is nothing to do. The alternating flip
    reads the epoch from ``epochs`` (the loader's :class:`~dlexp.data.memory.EpochSeed`) and
    expects images of which :func:`~dlexp.data.batch_augment.mirror_half` mirrored half.
    """
    from dlexp.data.batch_augment import (
        AlternatingFlip,
        BatchAffine,
        BatchAugment,
        BatchErasing,
        BatchFlip,
        BatchRandomCrop,
    )

    if cfg is None:
        return None
    steps: list = []
    if cfg.crop_padding > 0:
        steps.append(BatchRandomCrop(max(1, round(cfg.crop_padding * image_size))))
    if alternates(cfg, flip_ok):
        if epochs is None:
            raise ValueError("the alternating flip needs the loader's epochs")
        steps.append(AlternatingFlip(epochs))
    elif cfg.flip and flip_ok:
        steps.append(BatchFlip())
    if cfg.affine_degrees > 0 or list(cfg.affine_scale) != [1.0, 1.0]:
        steps.append(BatchAffine(cfg.affine_degrees, tuple(cfg.affine_scale)))
    if cfg.erasing > 0:
        steps.append(BatchErasing(cfg.erasing))
    return BatchAugment(steps) if steps else None


@contextmanager
def one_thread():
    """Run torch ops on one intra-op thread, as DataLoader workers do.

    Augmentation works on single small images and one batch at a time, where extra threads
    only add overhead, badly so on a busy CPU (measured on 2 shared cores: a 32 px random
    affine 0.26 ms on one thread, ~12 ms on two; MixUp 17 vs 320 us per image).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AugmentedImages(Dataset):
    """A map-style dataset applying ``transform`` to each uint8 image as it is drawn."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch's samples, transformed on one thread (see :func:`one_thread`)."""
        with one_thread():
            return [self[i] for i in indices]


class BatchMix:
    """MixUp / CutMix on a batch (one of them, drawn per batch, when both are on).

    Takes uint8 (or float in [0, 1]) images and integer labels; returns float images in
    [0, 1] and soft targets, each row a convex combination of two one-hot labels.
    """

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> None:
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not mixers:
            raise ValueError("BatchMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mix = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return self.mix(images, labels)


class MixingCollate:
    """A DataLoader ``collate_fn``: stack the samples, then apply :class:`BatchMix`."""

    def __init__(self, mix: BatchMix) -> None:
        self.mix = mix

    def __call__(self, samples):
        with one_thread():
            return self.mix(*default_collate(samples))


def batch_mix(cfg: AugmentConfig | None, num_classes: int) -> BatchMix | None:
    """The batch-level mixing of ``cfg`` (None when both alphas are 0)."""
    if cfg is None or not cfg.mixes:
        return None
    return BatchMix(num_classes, cfg.mixup_alpha, cfg.cutmix_alpha)

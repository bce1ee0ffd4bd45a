"""Batched training augmentation for the in-memory data path (``data.loader=memory``).

Each transform draws the same per-image parameters as its ``torchvision.transforms.v2``
counterpart in :func:`dlexp.data.augment.image_transform`, for a whole batch at once, and
applies them with tensor operations on the batch's device:

* :class:`BatchRandomCrop` = ``v2.RandomCrop(size, padding=p, fill=0)``: offsets uniform
  in ``[0, 2p]`` per axis, gathered from the zero-padded batch.
* :class:`BatchFlip` = ``v2.RandomHorizontalFlip()``: each image mirrored with p = 0.5.
* :class:`AlternatingFlip` (no per-image counterpart): airbench's flip; a random half of the
  images is mirrored once before training (:func:`mirror_half`), and every image is mirrored
  on odd epochs, so each is seen both ways in every two consecutive epochs.
* :class:`BatchAffine` = ``v2.RandomAffine(degrees, scale=...)``: angle ~ U(-d, d) and
  scale ~ U(lo, hi) about the image centre, nearest-neighbour sampling, zero fill
  (one ``affine_grid`` / ``grid_sample`` for the batch).
* :class:`BatchErasing` = ``v2.RandomErasing(p, value=0)``: same area (0.02-0.33) and
  log-uniform aspect ratio (0.3-3.3) draws, first of ten tries that fits, zero fill.

All draws come from one CPU :class:`torch.Generator` (a handful of numbers per image), so a
batch is a function of the generator's seed alone, identical on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


class BatchRandomCrop:
    """Random ``HxW`` crop of each image zero-padded by ``padding`` px on every side."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, n), generator=gen).to(x.device)
        padded = F.pad(x, (p, p, p, p))
        rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # N x H
        cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # N x W
        batch = torch.arange(n, device=x.device)[:, None, None]
        out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # N x H x W x C
        return out.permute(0, 3, 1, 2).contiguous()


class BatchFlip:
    """Horizontal flip of each image with probability 0.5."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


class AlternatingFlip:
    """Mirrors the whole batch on odd epochs (read from ``epochs.epoch``: the loader's
    :class:`~dlexp.data.memory.EpochSeed`, which Lightning sets before each epoch).

    Applied to images of which :func:`mirror_half` mirrored a random half beforehand, an
    image is mirrored in epoch e iff its own random bit differs from e's parity: the images
    mirrored in one epoch are exactly those left as they are in the next.
    """

    def __init__(self, epochs) -> None:
        self.epochs = epochs

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x.flip(-1) if self.epochs.epoch % 2 else x


def mirror_half(images: torch.Tensor, seed: int) -> torch.Tensor:
    """``images`` (N x C x H x W) with each mirrored with p = 0.5, drawn once from ``seed``
    (the per-image half of :class:`AlternatingFlip`); a new tensor."""
    bits = torch.rand(len(images), generator=torch.Generator().manual_seed(seed)) < 0.5
    return torch.where(bits.to(images.device)[:, None, None, None], images.flip(-1), images)


class BatchAffine:
    """Random rotation in ``[-degrees, degrees]`` and scale in ``scale`` about the centre."""

    def __init__(self, degrees: float, scale: tuple[float, float]) -> None:
        self.degrees, self.scale = degrees, scale

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = torch.deg2rad(_uniform(n, -self.degrees, self.degrees, gen))
        scale = _uniform(n, *self.scale, gen)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # output (normalized) coords -> input coords: inverse rotation, divided by the scale;
        # the aspect terms keep the rotation a rotation in pixels on non-square images
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        theta = theta.to(x.device)
        grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
        out = F.grid_sample(
            x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        return out.to(x.dtype)


class BatchErasing:
    """Random erasing (cutout) with probability ``p``: one zero-filled rectangle per image."""

    scale = (0.02, 0.33)
    ratio = (0.3, 3.3)
    tries = 10

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        erase = torch.rand(n, generator=gen) < self.p
        area = h * w * _uniform(n * self.tries, *self.scale, gen).view(n, self.tries)
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(_uniform(n * self.tries, log_lo, log_hi, gen)).view(n, self.tries)
        eh = torch.sqrt(area * aspect).round().long()
        ew = torch.sqrt(area / aspect).round().long()
        fits = (eh < h) & (ew < w)
        first = fits.long().argmax(1, keepdim=True)  # the first try that fits, as torchvision
        erase &= fits.any(1)
        eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
        top = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
        left = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
        ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
        rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])  # N x H
        cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])  # N x W
        mask = (rows[:, :, None] & cols[:, None, :] & erase[:, None, None]).to(x.device)
        return x.masked_fill(mask[:, None], 0)


class BatchAugment:
    """The per-image steps of an augmentation level, applied to whole batches in order."""

    def __init__(self, steps: list) -> None:
        self.steps = steps

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, gen)
        return x

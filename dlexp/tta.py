"""Test-time augmentation (``test.tta``): test logits averaged over views of each image.

In the style of the fastest public CIFAR-10 trainers (Keller Jordan's airbench, its
``tta_level`` 1 and 2):

* ``flip``: the image and its horizontal mirror, averaged;
* ``flip_translate``: half that average, half the same average over the image shifted by
  ``translate`` px down-right and up-left (6 views; airbench shifts by 1 px at 32 px).

Where the dataset's ``flip_ok`` is false (digits, MNIST-style sets, house numbers: a
mirrored digit may be another digit) the mirror is left out, as ``augment.flip`` leaves it
out of training, and said in the log: ``flip`` then scores the image alone, and
``flip_translate`` the image and its two shifts.

The logits are averaged, not the probabilities (as airbench does): the mean stays a logit
vector that the test loss, accuracy and confusion matrix read unchanged (its softmax is the
normalized geometric mean of the views' probabilities). A shift moves the raw (uint8)
image and fills the uncovered border with 0, as ``augment.crop_padding``'s random crops do
in training: a model trained with them has seen such views (reflection, airbench's padding,
would show it borders it never saw). Each view is one forward pass over the whole batch:
the batch size the model sees is unchanged, and so is the memory the test needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dlexp.config.test import TestConfig

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``images`` (N x C x H x W) moved ``dy`` px down and ``dx`` px right (negative: up,
    left); the pixels shifted in are 0."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


@dataclass(frozen=True)
class View:
    """One view of a test batch: mirrored or not, shifted by ``(dy, dx)`` px, its weight."""

    mirror: bool
    dy: int
    dx: int
    weight: float

    def of(self, images: torch.Tensor) -> torch.Tensor:
        if self.dy or self.dx:
            images = shifted(images, self.dy, self.dx)
        return images.flip(-1) if self.mirror else images


class TestTimeAugmentation:
    """The weighted mean of a forward's logits over ``views`` (float32)."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, views: list[View]) -> None:
        self.views = views

    def __call__(self, forward: Forward, images: torch.Tensor) -> torch.Tensor:
        logits = None
        for view in self.views:
            scored = forward(view.of(images)).float() * view.weight
            logits = scored if logits is None else logits + scored
        return logits


def tta_views(cfg: TestConfig, flip_ok: bool) -> list[View]:
    """The views ``cfg`` scores a test image by, their weights summing to 1 (see the
    module doc); the mirror only where ``flip_ok``."""
    mirrors = (False, True) if flip_ok and cfg.tta != "none" else (False,)
    shifts = [(0, 0)]
    if cfg.tta == "flip_translate":
        shifts += [(cfg.translate, cfg.translate), (-cfg.translate, -cfg.translate)]
    out = []
    for dy, dx in shifts:
        share = 1.0 if len(shifts) == 1 else 0.5 if (dy, dx) == (0, 0) else 0.5 / (len(shifts) - 1)
        out += [View(m, dy, dx, share / len(mirrors)) for m in mirrors]
    return out


def build_tta(cfg: TestConfig, flip_ok: bool) -> TestTimeAugmentation | None:
    """The TTA of ``cfg`` for a dataset whose mirrored images keep (``flip_ok``) or may
    change their labels; None where it scores the image alone (``tta=none``, or ``flip``
    without the mirror): the test then scores ``module(images)`` exactly as without TTA."""
    if cfg.tta != "none" and not flip_ok:
        log.info("test.tta=%s: no mirrored view for this dataset (a flipped image may change "
                 "its class)", cfg.tta)  # fmt: skip
    views = tta_views(cfg, flip_ok)
    return TestTimeAugmentation(views) if len(views) > 1 else None


def tta_record(cfg: TestConfig, flip_ok: bool) -> dict[str, Any]:
    """``test_tta`` in ``metrics.json`` and ``eval.json``: the mode asked for and the views
    scored (``mirror`` false where the dataset forbids it)."""
    views = tta_views(cfg, flip_ok)
    return {
        "mode": cfg.tta,
        "mirror": any(v.mirror for v in views),
        "translate_px": max(abs(v.dx) for v in views),
        "views": len(views),
    }

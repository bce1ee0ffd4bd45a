"""The ``test`` node's schema: how the test split is scored (``dlexp train``, ``dlexp eval``).

Test-time augmentation (``test.tta``) scores each test image by its logits averaged over a
few views of it (:mod:`dlexp.tta` computes them); training and validation never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlexp.config.fields import param

TTA_MODES = ("none", "flip", "flip_translate")


@dataclass
class TestConfig:
    """``test.*``: ``tta`` ``none`` (the image as it is), ``flip`` (and its horizontal
    mirror, where the dataset's ``flip_ok`` allows one), ``flip_translate`` (those, and each
    shifted by ``translate`` px down-right and up-left, zero-padded)."""

    __test__ = False  # not a pytest test class, whatever its name

    tta: str = param("none", choices=TTA_MODES)
    translate: int = param(2, ge=1)  # px, flip_translate's shift along each axis

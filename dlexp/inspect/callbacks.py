"""The layer pictures of a run: written into ``<run dir>/layers/`` and logged to TensorBoard."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from dlexp.inspect import LAYERS_FOLDER
from dlexp.inspect.layers import Pictures, layer_pictures
from dlexp.io import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGES = 4  # the fixed test images whose feature maps are drawn


def fixed_images(split, count: int = IMAGES) -> torch.Tensor:
    """The first image of each of the first ``count`` classes of a split (fewer classes: the
    first images as well): the same images for every run on the same data and seed."""
    images, labels = split.images, split.labels
    picked = []
    for label in labels.unique(sorted=True).tolist()[:count]:
        picked.append(int((labels == label).nonzero()[0]))
    for i in range(len(labels)):
        if len(picked) >= min(count, len(labels)):
            break
        if i not in picked:
            picked.append(i)
    return images[sorted(picked)]


def gray_or_rgb(grid: torch.Tensor) -> torch.Tensor:
    """A ``(3, H, W)`` grid as ``(1, H, W)`` when its channels are equal (gray images)."""
    return grid[:1] if torch.equal(grid[0], grid[1]) and torch.equal(grid[0], grid[2]) else grid


def png_bytes(grid: torch.Tensor) -> bytes:
    """A ``(3, H, W)`` grid in [0, 1] as PNG (gray when its channels are equal), each value
    rounded to 8 bits (as ``torchvision.utils.save_image``)."""
    from PIL import Image

    pixels = gray_or_rgb(grid).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(
        buffer, format="png"
    )
    return buffer.getvalue()


def write_pictures(pictures: Pictures, folder: Path) -> list[Path]:
    """Every grid as ``<folder>/<name>.png``; the paths written."""
    return [
        atomic_write_bytes(folder / f"{name}.png", png_bytes(image))
        for name, image in pictures.named().items()
    ]


def log_pictures(pictures: Pictures, loggers, step: int) -> None:
    """Every grid as a TensorBoard image ``layers/<name>``."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, image in pictures.named().items():
                logger.experiment.add_image(
                    f"{LAYERS_FOLDER}/{name}", gray_or_rgb(image), global_step=step
                )


class LayerPictures(pl.Callback):
    """After the test (on the tested, best checkpoint's weights): the first-layer filters
    and the stages' feature maps of :func:`fixed_images` into ``<run dir>/layers/`` and
    TensorBoard, as ``dlexp inspect <run dir>`` draws them again."""

    def __init__(self, run_dir: Path, images: torch.Tensor) -> None:
        self.folder = run_dir / LAYERS_FOLDER
        self.images = images

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        try:
            pictures = layer_pictures(pl_module.model, pl_module.input_transform, self.images)
        except Exception as exc:  # a model of another shape: the run's result stands
            log.warning("no layer pictures for this model: %s: %s", type(exc).__name__, exc)
            return
        write_pictures(pictures, self.folder)
        log_pictures(pictures, trainer.loggers, trainer.global_step)

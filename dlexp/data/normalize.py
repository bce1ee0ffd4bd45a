"""Input normalization computed on the training split (``data.normalize``)."""

from __future__ import annotations

import torch
from torch import nn


class InputNormalizer(nn.Module):
    """Maps a uint8 image batch to floats: ``(x / 255 - shift) / scale`` per channel.

    The statistics are buffers, so they travel inside every checkpoint and ``eval`` /
    ``predict`` apply exactly the preprocessing the model was trained with.
    """

    def __init__(self, mode: str, shift: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.mode = mode
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).float())
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).float())

    @classmethod
    def fit(cls, mode: str, images: torch.Tensor) -> InputNormalizer:
        """Statistics of ``images`` (uint8, NxCxHxW: the training split) for ``mode``."""
        channels = images.shape[1]
        x = images.transpose(0, 1).reshape(channels, -1).double() / 255.0
        if mode == "standardize":
            shift, scale = x.mean(1), x.std(1).clamp_min(1e-8)
        elif mode == "minmax":
            lo, hi = x.min(1).values, x.max(1).values
            shift, scale = lo, (hi - lo).clamp_min(1e-8)
        else:
            shift, scale = torch.zeros(channels), torch.ones(channels)
        return cls(mode, shift, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.shift) / self.scale

    def extra_repr(self) -> str:
        return f"mode={self.mode}"

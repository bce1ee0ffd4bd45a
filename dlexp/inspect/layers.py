"""A model's first-layer filters and its stages' feature maps as image grids (torch only).

Grids are ``torchvision.utils.make_grid`` tiles with each tile min-max scaled on its own to
[0, 1] (``normalize=True, scale_each=True``): a filter's or channel's smallest value is black,
its largest white (a constant tile is black). Tiles are enlarged by an integer factor (each
value a block of ``factor`` x ``factor`` pixels, no interpolation) to at least
:data:`MIN_TILE` pixels, so that a 5x5 filter is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlexp.transfer.stages import stages

MIN_TILE = 32  # px: tiles are enlarged by an integer factor to at least this size
MAX_FILTERS = 64  # the first-layer filters (or MLP units) shown
MAX_CHANNELS = 16  # the channels of a stage's output shown per image
PAD = 1  # px of white between tiles


@dataclass
class Pictures:
    """The grids (float ``(3, H, W)`` in [0, 1]) of one model on one set of images."""

    filters: torch.Tensor  # the first layer's weights, one tile per filter (or unit)
    filters_of: str  # the module they belong to (``backbone.conv1.0``)
    inputs: torch.Tensor  # the images, as the model received them (one row)
    feature_maps: dict[str, torch.Tensor]  # stage name -> rows of channels, one row an image

    def named(self) -> dict[str, torch.Tensor]:
        """Every grid by its file stem (``filters``, ``inputs``, ``feature_maps/1_conv2``)."""
        maps = {f"feature_maps/{name}": grid for name, grid in self.feature_maps.items()}
        return {"filters": self.filters, "inputs": self.inputs, **maps}


def enlarge(tiles: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` tiles with every value repeated into a block of at least
    :data:`MIN_TILE` pixels across (nearest neighbour, an integer factor)."""
    factor = max(1, -(-MIN_TILE // max(tiles.shape[-2:])))
    return tiles.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def grid(tiles: torch.Tensor, nrow: int) -> torch.Tensor:
    """``tiles`` (N, 1 or 3, h, w) as one grid, each tile min-max scaled on its own."""
    from torchvision.utils import make_grid

    return make_grid(
        enlarge(tiles.detach().float().cpu()),
        nrow=nrow,
        padding=PAD,
        normalize=True,
        scale_each=True,
        pad_value=1.0,
    )


def first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The model's first layer that sees the pixels: a linear layer, or one with a 4-d
    ``weight`` (a convolution, or SpeedNet's patch whitening, whose filters are buffers)."""
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear) or (
            isinstance(weight, torch.Tensor) and weight.dim() == 4
        ):
            return name, module
    raise ValueError("the model has no convolution or linear layer")


def filter_tiles(layer: nn.Module, in_channels: int, image_size: int) -> torch.Tensor:
    """The first layer's weights as ``(N, 1 or 3, h, w)`` tiles, at most :data:`MAX_FILTERS`.

    A convolution's filters are its tiles (RGB for 3 input channels, else one gray tile per
    input channel); a linear layer's units are its rows, shown as images of the input's shape.
    """
    weight = layer.weight.detach()[:MAX_FILTERS]
    if isinstance(layer, nn.Linear):
        weight = weight.reshape(len(weight), in_channels, image_size, image_size)
    if weight.shape[1] != 3:
        weight = weight.reshape(-1, 1, *weight.shape[-2:])[:MAX_FILTERS]
    return weight


def stage_outputs(backbone: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every stage of the backbone that is a stack of maps ``(N, C, H, W)``
    larger than 1x1 (not a global pooling's), keyed ``<index>_<name>``; the stages run in
    order (the backbone is an ``nn.Sequential``; called stage by stage, a compiled model runs
    uncompiled here)."""
    outputs = {}
    for i, (name, stage) in enumerate(stages(backbone)):
        x = stage(x)
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[-2:].numel() > 1:
            outputs[f"{i}_{name}"] = x
    return outputs


@torch.no_grad()
def layer_pictures(model: nn.Module, input_transform: nn.Module, images: torch.Tensor) -> Pictures:
    """The pictures of a :class:`~dlexp.models.Classifier` on uint8 ``images`` (N, C, H, W).

    The model is put in eval mode for the forward pass, and each module back in its mode
    afterwards.
    """
    in_channels, image_size = images.shape[1], images.shape[-1]
    name, layer = first_layer(model)
    filters = filter_tiles(layer, in_channels, image_size)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        weight = next(model.parameters())  # (its device and dtype: 64-true, bf16-true ...)
        x = input_transform(images.to(weight.device)).to(weight.dtype)
        outputs = stage_outputs(model.backbone, x)
    finally:
        for module, training in modes.items():  # (a frozen stage may stay in eval mode)
            module.training = training
    inputs = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    maps = {}
    for stage, out in outputs.items():
        shown = out[:, :MAX_CHANNELS]
        maps[stage] = grid(shown.reshape(-1, 1, *out.shape[-2:]), nrow=shown.shape[1])
    return Pictures(
        filters=grid(filters, nrow=min(8, len(filters))),
        filters_of=name,
        inputs=grid(inputs, nrow=len(inputs)),
        feature_maps=maps,
    )

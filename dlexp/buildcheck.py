"""The checks that need torch (not Lightning): each distinct model is built on the ``meta``
device for its data, its transfer policy's stages and weights are resolved, and the
precision is checked against the accelerator the Trainer will pick.

Run by ``dlexp train`` for every job of a command line after the torch-free checks of
:mod:`dlexp.preflight`, before any directory is created.
"""

from __future__ import annotations

from dlexp.config import Config
from dlexp.config.transfer import (
    TORCHVISION_PREFIX,
    FreezeStagesConfig,
    PretrainedConfig,
    is_torchvision,
)
from dlexp.errors import ConfigError


def resolved_accelerator(accelerator: str) -> str:
    """``cpu``, ``gpu`` or ``mps``: what Lightning's ``accelerator`` resolves to here."""
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if accelerator == "auto":
        return "gpu" if has_cuda else "mps" if has_mps else "cpu"
    if accelerator in ("gpu", "cuda") and not has_cuda:
        raise ConfigError(
            "trainer.accelerator", accelerator, "no CUDA GPU is visible here (use auto or cpu)"
        )
    if accelerator == "mps" and not has_mps:
        raise ConfigError("trainer.accelerator", accelerator, "no Apple GPU (MPS) here")
    return "gpu" if accelerator == "cuda" else accelerator


def check_buildable(configs: list[Config]) -> None:
    """Raise :class:`ConfigError` for the first config whose model, transfer policy or
    precision cannot work; each distinct (model, data shape, transfer) is built once."""

    from dlexp.models.registry import build_on_meta

    seen: set[str] = set()
    for cfg in configs:
        cfg.trainer.check_precision(resolved_accelerator(cfg.trainer.accelerator))
        shape = cfg.data.shape()
        key = repr((cfg.model, shape, cfg.transfer))
        if key in seen:
            continue
        seen.add(key)
        model = build_on_meta(cfg.model, shape)
        transfer = cfg.transfer
        if isinstance(transfer, FreezeStagesConfig):
            from dlexp.transfer.stages import check_freeze_until

            check_freeze_until(model, transfer.freeze_until)
        if isinstance(transfer, PretrainedConfig) and is_torchvision(transfer.source):
            from dlexp.transfer.sources import torchvision_arch, torchvision_weights_file

            arch = torchvision_arch(transfer.source, cfg.model)
            torchvision_weights_file(arch, transfer.source[len(TORCHVISION_PREFIX) :])

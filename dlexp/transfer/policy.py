"""Freeze policies: which backbone stages train, their BatchNorm layers and learning rates.

The backbone's top-level children are its stages (:mod:`dlexp.transfer.stages`).
:class:`FreezePolicy` (a Lightning ``BaseFinetuning`` callback) freezes the chosen stages
before the optimizer is built and, for ``gradual``, makes them trainable at
``transfer.unfreeze_at_epoch``. :class:`GroupedOptimizer` builds the optimizer with two param
groups, ``head`` and ``backbone`` (at ``backbone_lr_factor`` times the rate); for
``gradual`` the backbone's parameters are in their group from the start, frozen (their
``.grad`` stays None, so the optimizer skips them: no update, no weight decay, no momentum),
so any learning-rate schedule sees the same param groups for the whole run.

``transfer.lr_growth`` multiplies the backbone's scheduled rate by ``lr_growth ** k`` in the
``k``-th epoch after the unfreeze, up to the head's rate. The multiplier is the group's
``lr_scale``; it is applied inside each optimizer step only (:func:`apply_lr_scale`), so
the schedulers, which read and write ``param_group["lr"]`` between steps, never see it and
cannot compound it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dlexp.config.transfer import (
    FreezeStagesConfig,
    GradualConfig,
    LinearProbeConfig,
    TransferConfig,
)
from dlexp.transfer.stages import frozen_stages_until, stage_index, stages

BACKBONE_GROUP = "backbone"
HEAD_GROUP = "head"
LR_SCALE = "lr_scale"  # param-group key: the multiplier applied to "lr" inside each step
_SCHEDULED_LR = "_scheduled_lr"  # param-group key, only during a step: "lr" before scaling
log = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_GROUP",
    "LR_SCALE",
    "FreezePolicy",
    "GroupedOptimizer",
    "apply_lr_scale",
    "frozen_stages",
    "growth_scale",
    "stage_index",
    "stages",
]


def frozen_stages(backbone: nn.Module, cfg: TransferConfig) -> list[tuple[str, nn.Module]]:
    """The stages the policy freezes before training (``cfg``: the ``transfer`` node)."""
    if isinstance(cfg, FreezeStagesConfig):
        return frozen_stages_until(backbone, cfg.freeze_until)
    if isinstance(cfg, (LinearProbeConfig, GradualConfig)):
        return stages(backbone)
    return []


def growth_scale(epochs_after_unfreeze: int, lr_factor: float, lr_growth: float) -> float:
    """The backbone's ``lr_scale`` ``k`` epochs after the unfreeze epoch (``k=0``: that epoch).

    ``lr_growth ** k``, capped where the backbone reaches the head's rate (``1 / lr_factor``);
    1 before the unfreeze and whenever ``lr_factor >= 1`` (the backbone is already there).
    """
    cap = max(1.0, 1.0 / lr_factor)
    k = epochs_after_unfreeze
    if k <= 0 or lr_growth == 1.0 or cap == 1.0:
        return 1.0
    if k * math.log(lr_growth) >= math.log(cap):  # (no overflow of lr_growth ** k)
        return cap
    return lr_growth**k


def _scale_lr(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Optimizer step pre-hook: ``lr *= lr_scale`` (never above the head group's rate)."""
    head = next((g["lr"] for g in optimizer.param_groups if g.get("name") == HEAD_GROUP), None)
    for group in optimizer.param_groups:
        scale = group.get(LR_SCALE, 1.0)
        if scale == 1.0:
            continue
        lr = group[_SCHEDULED_LR] = group["lr"]
        scaled = lr * scale
        if head is not None and scale > 1.0:
            scaled = min(scaled, max(lr, head))
        group["lr"] = scaled


def _unscale_lr(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Optimizer step post-hook: back to the scheduled rate (exactly: the value saved)."""
    for group in optimizer.param_groups:
        if _SCHEDULED_LR in group:
            group["lr"] = group.pop(_SCHEDULED_LR)


def apply_lr_scale(optimizer: torch.optim.Optimizer) -> list:
    """Make ``optimizer`` step each param group at ``lr x group["lr_scale"]``.

    Outside :meth:`~torch.optim.Optimizer.step`, ``group["lr"]`` stays the scheduled rate:
    what every ``torch.optim.lr_scheduler`` reads and writes (the recursive ones, LinearLR,
    CosineAnnealingLR, StepLR, ReduceLROnPlateau, as well as the closed-form OneCycleLR), the
    learning-rate monitor logs and checkpoints save. Returns the hook handles.
    """
    return [
        optimizer.register_step_pre_hook(_scale_lr),
        optimizer.register_step_post_hook(_unscale_lr),
    ]


class FreezePolicy(BaseFinetuning):
    """Freezes ``stages``; with ``unfreeze_at_epoch`` set, unfreezes them then (``gradual``).

    ``train_bn=False`` (``transfer.bn=freeze``): the BatchNorm layers of the frozen stages
    keep their affine parameters and running statistics: they are held in eval mode at every
    training batch (Lightning puts the whole model in train mode each epoch) and stay frozen
    after a ``gradual`` unfreeze too. ``train_bn=True`` is Lightning's default: they train.

    The unfreeze only flips ``requires_grad``: the parameters are in the optimizer's
    ``backbone`` group from the start (see :meth:`to_unfreeze` and :class:`GroupedOptimizer`).
    From then on the group's ``lr_scale`` is :func:`growth_scale`. The state is a function of
    the epoch, so a resumed run unfreezes and scales the same way.
    """

    def __init__(
        self,
        stages: list[nn.Module],
        *,
        train_bn: bool,
        unfreeze_at_epoch: int | None = None,
        lr_factor: float = 0.1,
        lr_growth: float = 1.5,
    ) -> None:
        super().__init__()
        self.stages = stages
        self.train_bn = train_bn
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.lr_factor = lr_factor
        self.lr_growth = lr_growth
        self.frozen_bn = (
            []
            if train_bn
            else [m for s in stages for m in s.modules() if isinstance(m, _BatchNorm)]
        )
        self.unfrozen = False
        self._hooks: list = []

    def to_unfreeze(self) -> list[nn.Parameter]:
        """The parameters the unfreeze makes trainable (none without ``unfreeze_at_epoch``):
        all of the stages' but, with ``train_bn=False``, their BatchNorm layers'."""
        if self.unfreeze_at_epoch is None:
            return []
        return [
            p
            for module in self.flatten_modules(self.stages)
            if self.train_bn or not isinstance(module, _BatchNorm)
            for p in module.parameters(recurse=False)
        ]

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(self.stages, train_bn=self.train_bn)
        self.unfrozen = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        epochs, at = trainer.max_epochs, self.unfreeze_at_epoch
        if at is not None and epochs is not None and 0 < epochs <= at:
            log.warning(
                "transfer.unfreeze_at_epoch=%d >= trainer.max_epochs=%d: the backbone stays "
                "frozen for the whole run",
                at,
                epochs,
            )
        if at is not None and self.lr_growth != 1.0:
            for optimizer in trainer.optimizers:
                self._hooks += apply_lr_scale(optimizer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Saved inside a step (an interruption): keep the scheduled rate, not the scaled one.
        for state in checkpoint.get("optimizer_states", []):
            for group in state.get("param_groups", []):
                if _SCHEDULED_LR in group:
                    group["lr"] = group.pop(_SCHEDULED_LR)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for bn in self.frozen_bn:
            bn.eval()

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.unfreeze_at_epoch is None:
            return
        if epoch >= self.unfreeze_at_epoch and not self.unfrozen:
            self._unfreeze(optimizer)
        group = next((g for g in optimizer.param_groups if g.get("name") == BACKBONE_GROUP), None)
        if group is not None:
            k = epoch - self.unfreeze_at_epoch
            group[LR_SCALE] = growth_scale(k, self.lr_factor, self.lr_growth)

    def _unfreeze(self, optimizer: torch.optim.Optimizer) -> None:
        params = self.to_unfreeze()
        present = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = sum(id(p) not in present for p in params)
        if missing:  # a param group added now would break every schedule (OneCycleLR fails)
            raise RuntimeError(
                f"transfer=gradual: {missing} backbone parameters to unfreeze are not in the "
                "optimizer (it must be built by GroupedOptimizer with to_unfreeze())"
            )
        self.make_trainable(self.stages)
        for bn in self.frozen_bn:
            self.freeze_module(bn)
        self.unfrozen = True


class GroupedOptimizer:
    """An optimizer factory (``cfg.optimizer`` partial) for the trainable parameters only.

    Called with the module's parameters (or param-group dicts), it builds the optimizer over
    those that require gradients and those ``later()`` returns (the ones a ``gradual``
    unfreeze will make trainable, frozen now), in two groups: ``head`` (everything outside
    the backbone) at the configured learning rate and ``backbone`` at ``lr_factor`` times it.
    """

    def __init__(
        self,
        factory: Callable,
        backbone: nn.Module,
        lr_factor: float,
        later: Callable[[], Iterable[nn.Parameter]] | None = None,
    ) -> None:
        self.factory = factory
        self.backbone = backbone
        self.lr_factor = lr_factor
        self.later = later

    def __call__(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        items = list(params)
        given = items if items and isinstance(items[0], dict) else [{"params": items}]
        in_backbone = {id(p) for p in self.backbone.parameters()}
        later = {id(p) for p in self.later()} if self.later else set()
        groups, scaled = [], []
        for group in given:
            options = {k: v for k, v in group.items() if k != "params"}
            kept = [p for p in group["params"] if p.requires_grad or id(p) in later]
            for name, part in (
                (HEAD_GROUP, [p for p in kept if id(p) not in in_backbone]),
                (BACKBONE_GROUP, [p for p in kept if id(p) in in_backbone]),
            ):
                if part:
                    scaled.append(name == BACKBONE_GROUP)
                    groups.append({"name": name, **options, "params": part})
        optimizer = self.factory(groups)
        for group, scale in zip(optimizer.param_groups, scaled, strict=True):
            if scale:
                group["lr"] = group["lr"] * self.lr_factor
        return optimizer

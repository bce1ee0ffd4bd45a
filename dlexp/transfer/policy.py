"""Freeze policies: which backbone stages train, their BatchNorm layers and learning rates.

The backbone's top-level children are its stages. :class:`FreezePolicy` (a Lightning
``BaseFinetuning`` callback) freezes the chosen stages before the optimizer is built and,
for ``gradual``, unfreezes them at ``transfer.unfreeze_at_epoch`` on the schedule of
Lightning's ``BackboneFinetuning``: the backbone starts at ``backbone_lr_factor`` times the
head's learning rate and is multiplied by ``lr_growth`` every epoch until it reaches it.
:class:`GroupedOptimizer` gives the trainable backbone parameters their own param group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dlexp.config.transfer import TransferConfig
from dlexp.transfer.stages import stage_index, stages

BACKBONE_GROUP = "backbone"
log = logging.getLogger(__name__)


def frozen_stages(backbone: nn.Module, cfg: TransferConfig) -> list[tuple[str, nn.Module]]:
    """The stages the policy freezes before training."""
    if cfg.name in ("scratch", "finetune"):
        return []
    named = stages(backbone)
    if cfg.name in ("linear_probe", "gradual"):
        return named
    return named[: stage_index(named, cfg.freeze_until) + 1]


class FreezePolicy(BaseFinetuning):
    """Freezes ``stages``; with ``unfreeze_at_epoch`` set, unfreezes them then (``gradual``).

    ``train_bn=False`` (``transfer.bn=freeze``): the BatchNorm layers of the frozen stages
    keep their affine parameters and running statistics: they are held in eval mode at every
    training batch (Lightning puts the whole model in train mode each epoch) and stay frozen
    after a ``gradual`` unfreeze too. ``train_bn=True`` is Lightning's default: they train.
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

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(self.stages, train_bn=self.train_bn)

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

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for bn in self.frozen_bn:
            bn.eval()

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch:
            return
        head_lr = optimizer.param_groups[0]["lr"]
        group = next((g for g in optimizer.param_groups if g.get("name") == BACKBONE_GROUP), None)
        if epoch > self.unfreeze_at_epoch:
            if group is not None:
                group["lr"] = min(group["lr"] * self.lr_growth, head_lr)
            return
        self.make_trainable(self.stages)
        for bn in self.frozen_bn:
            self.freeze_module(bn)
        # By identity: BaseFinetuning.filter_on_optimizer compares values (torch.equal), which
        # would drop a parameter that merely equals one already in the optimizer.
        present = {id(p) for g in optimizer.param_groups for p in g["params"]}
        params = [p for p in self.filter_params(self.stages, self.train_bn) if id(p) not in present]
        lr = head_lr * self.lr_factor
        if group is None:
            optimizer.add_param_group({"params": params, "lr": lr, "name": BACKBONE_GROUP})
        else:
            group["params"].extend(params)
            group["lr"] = lr


class GroupedOptimizer:
    """An optimizer factory (``cfg.optimizer`` partial) for the trainable parameters only.

    Called with the module's parameters (or param-group dicts), it builds the optimizer over
    those that require gradients, in two groups: ``head`` (everything outside the backbone)
    at the configured learning rate and ``backbone`` at ``lr_factor`` times it.
    """

    def __init__(self, factory: Callable, backbone: nn.Module, lr_factor: float) -> None:
        self.factory = factory
        self.backbone = backbone
        self.lr_factor = lr_factor

    def __call__(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        items = list(params)
        given = items if items and isinstance(items[0], dict) else [{"params": items}]
        in_backbone = {id(p) for p in self.backbone.parameters()}
        groups, scaled = [], []
        for group in given:
            options = {k: v for k, v in group.items() if k != "params"}
            trainable = [p for p in group["params"] if p.requires_grad]
            for name, part in (
                ("head", [p for p in trainable if id(p) not in in_backbone]),
                (BACKBONE_GROUP, [p for p in trainable if id(p) in in_backbone]),
            ):
                if part:
                    scaled.append(name == BACKBONE_GROUP)
                    groups.append({"name": name, **options, "params": part})
        optimizer = self.factory(groups)
        for group, scale in zip(optimizer.param_groups, scaled, strict=True):
            if scale:
                group["lr"] = group["lr"] * self.lr_factor
        return optimizer

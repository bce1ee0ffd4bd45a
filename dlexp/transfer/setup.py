"""Setting up a run's transfer policy: initial weights, frozen stages, param groups.

:func:`prepare_transfer` is the one call the training path makes: it loads the source into
the freshly built model and returns the callbacks and the optimizer factory that carry out
the freeze policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
from torch import nn

from dlexp.config.model_base import ModelConfig
from dlexp.config.transfer import FrozenBackboneConfig, GradualConfig, TransferConfig
from dlexp.transfer.policy import FreezePolicy, GroupedOptimizer, frozen_stages
from dlexp.transfer.sources import load_source


@dataclass
class TransferSetup:
    """What a policy adds to a run: callbacks, backbone param group, a record for metrics.json."""

    callbacks: list[pl.Callback] = field(default_factory=list)
    backbone: nn.Module | None = None  # set: the optimizer gets a separate backbone group
    lr_factor: float = 1.0
    record: dict[str, Any] = field(default_factory=dict)
    # the parameters frozen now that a gradual unfreeze trains: in the optimizer from the start
    later: Callable[[], list[nn.Parameter]] | None = None

    def optimizer(self, factory: Callable) -> Callable:
        """The optimizer factory to give the LightningModule (``cfg.optimizer``'s partial)."""
        if self.backbone is None:
            return factory
        return GroupedOptimizer(factory, self.backbone, self.lr_factor, self.later)


def prepare_transfer(cfg: TransferConfig, model, model_cfg: ModelConfig) -> TransferSetup:
    """Load ``cfg.source`` into ``model`` (a Classifier built from ``model_cfg``, the ``model``
    node) and set up the freeze policy."""
    record: dict[str, Any] = {"policy": cfg.name}
    if cfg.loads_weights:
        record.update(load_source(cfg, model, model_cfg).as_dict())
    frozen = frozen_stages(model.backbone, cfg)
    callbacks: list[pl.Callback] = []
    later = None
    lr_factor = cfg.backbone_lr_factor
    if frozen:
        assert isinstance(cfg, FrozenBackboneConfig)  # the policies that freeze stages
        gradual = isinstance(cfg, GradualConfig)
        policy = FreezePolicy(
            [module for _, module in frozen],
            train_bn=cfg.bn == "train",
            unfreeze_at_epoch=cfg.unfreeze_at_epoch if gradual else None,
            lr_factor=lr_factor,
            lr_growth=cfg.lr_growth if gradual else 1.0,
        )
        callbacks.append(policy)
        later = policy.to_unfreeze
        record["frozen_stages"] = [name for name, _ in frozen]
    grouped = bool(frozen) or lr_factor != 1.0
    if lr_factor != 1.0:
        record["backbone_lr_factor"] = lr_factor
    return TransferSetup(callbacks, model.backbone if grouped else None, lr_factor, record, later)

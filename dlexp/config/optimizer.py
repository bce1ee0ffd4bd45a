"""The ``optimizer`` group's schemas (``dlexp/conf/optimizer/*.yaml``): torch.optim classes,
instantiated by Hydra as partials (``_target_``, ``_partial_``) and given the parameters by
the LightningModule."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = param(1e-3, gt=0)
    weight_decay: float = param(0.0, ge=0)


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = param(0.05, gt=0)
    momentum: float = param(0.9, ge=0, lt=1)
    nesterov: bool = False

    def check(self, key: str) -> None:
        if self.nesterov and self.momentum == 0:
            raise ConfigError(f"{key}.nesterov", True, "needs optimizer.momentum > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: list[float] = param(factory=lambda: [0.9, 0.999], ge=0, lt=1, each=True)
    eps: float = param(1e-8, gt=0)

    def check(self, key: str) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"{key}.betas", self.betas, "must be a list of two numbers")


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = param(0.01, ge=0)


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    alpha: float = param(0.99, gt=0, lt=1)
    momentum: float = param(0.0, ge=0, lt=1)
    eps: float = param(1e-8, gt=0)


OPTIMIZER_SCHEMAS: dict[str, type] = {
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "adamw": AdamWConfig,
    "rmsprop": RMSpropConfig,
}

"""The ``scheduler`` group (``dlexp/conf/scheduler/*.yaml``): torch's lr_scheduler for Lightning.

Each option's schema builds its scheduler in :meth:`build` and returns Lightning's
``lr_scheduler`` dict (the scheduler, its ``interval`` and, for ``plateau``, its
``monitor``). Schedules counted in epochs step once per epoch; ``cosine`` and ``onecycle``
step once per optimizer step, over the total that the Trainer estimates
(``trainer.estimated_stepping_batches``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING

from dlexp.config.fields import param
from dlexp.errors import ConfigError

if TYPE_CHECKING:
    from torch.optim import Optimizer

SchedulerFactory = Callable[..., dict[str, Any]]


@dataclass
class SchedulerConfig:
    name: str = MISSING

    def build(self, optimizer: Optimizer, *, total_steps: int, max_epochs: int) -> dict | None:
        """Lightning's ``lr_scheduler`` dict for ``optimizer`` (None: a constant rate)."""
        return None

    def check_against(self, max_epochs: int, key: str) -> None:
        """Rules involving ``trainer.max_epochs``: checked before training starts."""


@dataclass
class NoSchedulerConfig(SchedulerConfig):
    name: str = "none"


@dataclass
class StepConfig(SchedulerConfig):
    """StepLR: multiply the rate by ``gamma`` every ``step_size`` epochs."""

    name: str = "step"
    step_size: int = param(5, ge=1)
    gamma: float = param(0.5, gt=0, le=1)

    def check_against(self, max_epochs: int, key: str) -> None:
        if self.step_size >= max_epochs:
            raise ConfigError(
                f"{key}.step_size",
                self.step_size,
                f"must be < trainer.max_epochs={max_epochs} (the rate would never change)",
            )

    def build(self, optimizer, *, total_steps, max_epochs):
        from torch.optim import lr_scheduler as sched

        scheduler = sched.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        return {"scheduler": scheduler, "interval": "epoch"}


@dataclass
class MultiStepConfig(SchedulerConfig):
    """MultiStepLR: multiply the rate by ``gamma`` at each epoch of ``milestones``."""

    name: str = "multistep"
    milestones: list[int] = param(factory=lambda: [8, 12], ge=1, each=True)
    gamma: float = param(0.1, gt=0, le=1)

    def check(self, key: str) -> None:
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ConfigError(f"{key}.milestones", list(self.milestones), "must be increasing")

    def check_against(self, max_epochs: int, key: str) -> None:
        if self.milestones and self.milestones[-1] >= max_epochs:
            raise ConfigError(
                f"{key}.milestones",
                list(self.milestones),
                f"must be < trainer.max_epochs={max_epochs} (a later milestone never applies)",
            )

    def build(self, optimizer, *, total_steps, max_epochs):
        from torch.optim import lr_scheduler as sched

        scheduler = sched.MultiStepLR(optimizer, milestones=list(self.milestones), gamma=self.gamma)
        return {"scheduler": scheduler, "interval": "epoch"}


@dataclass
class CosineConfig(SchedulerConfig):
    """Linear warmup from ``warmup_start_factor``·lr, then cosine annealing to ``min_lr``.

    ``SequentialLR(LinearLR, CosineAnnealingLR)``, stepped every optimizer step.
    """

    name: str = "cosine"
    warmup_epochs: float = param(1.0, ge=0)
    warmup_start_factor: float = param(0.1, gt=0, le=1)
    min_lr: float = param(0.0, ge=0)

    def check_against(self, max_epochs: int, key: str) -> None:
        if self.warmup_epochs >= max_epochs:
            raise ConfigError(
                f"{key}.warmup_epochs",
                self.warmup_epochs,
                f"must be < trainer.max_epochs={max_epochs}",
            )

    def build(self, optimizer, *, total_steps, max_epochs):
        from torch.optim import lr_scheduler as sched

        warmup = round(self.warmup_epochs * total_steps / max_epochs)
        cosine = sched.CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps - warmup), eta_min=self.min_lr
        )
        if warmup == 0:
            return {"scheduler": cosine, "interval": "step"}
        linear = sched.LinearLR(
            optimizer, start_factor=self.warmup_start_factor, end_factor=1.0, total_iters=warmup
        )
        scheduler = sched.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
        return {"scheduler": scheduler, "interval": "step"}


@dataclass
class OneCycleConfig(SchedulerConfig):
    """OneCycleLR (Smith 2018) over the whole run; ``max_lr`` null means ``peak_factor`` x
    each parameter group's ``optimizer.lr``."""

    name: str = "onecycle"
    max_lr: float | None = param(None, gt=0)
    peak_factor: float = param(1.0, gt=0)
    pct_start: float = param(0.3, gt=0, lt=1)
    anneal_strategy: str = param("cos", choices=("cos", "linear"))
    div_factor: float = param(25.0, gt=0)
    final_div_factor: float = param(1e4, gt=0)
    three_phase: bool = False
    cycle_momentum: bool = False

    def build(self, optimizer, *, total_steps, max_epochs):
        from torch.optim import lr_scheduler as sched

        scheduler = sched.OneCycleLR(
            optimizer,
            max_lr=self.max_lr or [self.peak_factor * g["lr"] for g in optimizer.param_groups],
            total_steps=max(1, total_steps),
            pct_start=self.pct_start,
            anneal_strategy=self.anneal_strategy,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            three_phase=self.three_phase,
            cycle_momentum=self.cycle_momentum,
        )
        return {"scheduler": scheduler, "interval": "step"}


@dataclass
class PlateauConfig(SchedulerConfig):
    """ReduceLROnPlateau: multiply the rate by ``factor`` when ``monitor`` stalls."""

    name: str = "plateau"
    monitor: str = "val/loss"
    mode: str = param("min", choices=("min", "max"))
    factor: float = param(0.1, gt=0, lt=1)
    patience: int = param(2, ge=0)
    threshold: float = param(1e-4, ge=0)
    min_lr: float = param(0.0, ge=0)

    def build(self, optimizer, *, total_steps, max_epochs):
        from torch.optim import lr_scheduler as sched

        scheduler = sched.ReduceLROnPlateau(
            optimizer,
            mode=self.mode,
            factor=self.factor,
            patience=self.patience,
            threshold=self.threshold,
            min_lr=self.min_lr,
        )
        return {"scheduler": scheduler, "interval": "epoch", "monitor": self.monitor}


SCHEDULER_SCHEMAS: dict[str, type[SchedulerConfig]] = {
    "none": NoSchedulerConfig,
    "step": StepConfig,
    "multistep": MultiStepConfig,
    "cosine": CosineConfig,
    "onecycle": OneCycleConfig,
    "plateau": PlateauConfig,
}


def scheduler_factory(cfg: SchedulerConfig) -> SchedulerFactory | None:
    """A callable ``(optimizer, total_steps=, max_epochs=) -> lr_scheduler dict``, or None
    for a constant rate."""
    return None if isinstance(cfg, NoSchedulerConfig) else cfg.build

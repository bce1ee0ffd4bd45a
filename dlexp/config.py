"""The root config schema, its registration with Hydra, and checking a command line up front.

:func:`check_command_line` composes every job a command line describes (each point of a
multirun grid too) and validates it before Hydra creates any directory, so that bad input
fails fast with one line and leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from dlexp.errors import ConfigError
from dlexp.loss import LossConfig
from dlexp.regularization import RegularizationConfig
from dlexp.schema import param
from dlexp.trainer import TrainerConfig

CONF_DIR = Path(os.environ.get("DLEXP_CONF_DIR", Path(__file__).resolve().parent / "conf"))
RUN_ID_ENV = "DLEXP_RUN_ID"


def new_run_id() -> str:
    """A fresh ``<date>_<time>_<random>`` name for the next run or sweep directory.

    The random suffix keeps runs started in the same second (or on several machines
    writing to one file system) apart. It is kept in the environment so that the processes
    a launcher starts for the jobs (joblib, SLURM, DDP ranks) resolve the same directory.
    """
    os.environ[RUN_ID_ENV] = time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)
    return os.environ[RUN_ID_ENV]


def current_run_id() -> str:
    """The name ``${run_id:}`` resolves to (set by :func:`new_run_id`)."""
    return os.environ.get(RUN_ID_ENV) or new_run_id()


@dataclass
class Config:
    """The root of every composed config (``conf/config.yaml``)."""

    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augment: Any = MISSING
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: dict[str, Any] | None = field(default_factory=dict)
    callbacks: dict[str, Any] | None = field(default_factory=dict)
    transfer: Any = MISSING
    seed: int = param(42, ge=0, lt=2**32)
    resume: str | None = None  # a run dir (set by `dlexp train resume=<dir>`) or "auto"

    def check(self, key: str) -> None:
        """Rules spanning groups: the model must take the data's image size, a schedule's
        warmup must end before the run does, gradual unfreezing owns the learning rate,
        ``resume`` must name a run."""
        from dlexp.data.registry import data_shape
        from dlexp.models.registry import check_model_input
        from dlexp.resume import run_dir_of

        if self.resume not in (None, "auto"):
            run_dir_of(self.resume)
        check_model_input(self.model, data_shape(self.data).image_size)
        if hasattr(self.scheduler, "check_against"):
            self.scheduler.check_against(self.trainer.max_epochs, "scheduler")
        if self.transfer.name == "gradual" and self.scheduler.name != "none":
            raise ConfigError(
                "scheduler",
                self.scheduler.name,
                "must be none with transfer=gradual (the policy sets the backbone's learning "
                "rate itself, growing it by transfer.lr_growth each epoch)",
            )


def register_configs() -> None:
    """Store the root schema and each option's schema (``schema/<group>/<name>``)."""
    from dlexp.callbacks import CALLBACK_SCHEMAS
    from dlexp.data import DATASETS
    from dlexp.data.augment import AUGMENT_LEVELS, AugmentConfig
    from dlexp.models import MODELS
    from dlexp.optim import OPTIMIZER_SCHEMAS
    from dlexp.schedulers import SCHEDULER_SCHEMAS
    from dlexp.transfer import TRANSFER_SCHEMAS

    cs = ConfigStore.instance()
    cs.store(name="dlexp_config", node=Config)
    for group, schemas in (
        ("data", {n: s.config for n, s in DATASETS.items()}),
        ("model", {n: s.config for n, s in MODELS.items()}),
        ("optimizer", OPTIMIZER_SCHEMAS),
        ("scheduler", SCHEDULER_SCHEMAS),
        ("augment", dict.fromkeys(AUGMENT_LEVELS, AugmentConfig)),
        ("callbacks", CALLBACK_SCHEMAS),
        ("transfer", TRANSFER_SCHEMAS),
    ):
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", current_run_id)


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML."""
    return OmegaConf.to_yaml(cfg, resolve=True)

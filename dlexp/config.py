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

from dlexp.schema import param
from dlexp.trainer import TrainerConfig

CONF_DIR = Path(os.environ.get("DLEXP_CONF_DIR", Path(__file__).resolve().parent.parent / "conf"))
RUN_ID = time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)


@dataclass
class Config:
    """The root of every composed config (``conf/config.yaml``)."""

    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: dict[str, Any] | None = field(default_factory=dict)
    callbacks: dict[str, Any] | None = field(default_factory=dict)
    transfer: Any = MISSING
    seed: int = param(42, ge=0, lt=2**32)


def register_configs() -> None:
    """Store the root schema and each option's schema (``schema/<group>/<name>``)."""
    from dlexp.data import DATASETS
    from dlexp.models import MODELS
    from dlexp.optim import OPTIMIZER_SCHEMAS
    from dlexp.transfer import TRANSFER_SCHEMAS

    cs = ConfigStore.instance()
    cs.store(name="dlexp_config", node=Config)
    for group, schemas in (
        ("data", {n: s.config for n, s in DATASETS.items()}),
        ("model", {n: s.config for n, s in MODELS.items()}),
        ("optimizer", OPTIMIZER_SCHEMAS),
        ("transfer", TRANSFER_SCHEMAS),
    ):
        for name, schema in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=schema)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", lambda: RUN_ID)


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML."""
    return OmegaConf.to_yaml(cfg, resolve=True)

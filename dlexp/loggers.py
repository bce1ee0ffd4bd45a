"""Loggers (``conf/logger/*.yaml``): Lightning loggers writing into the run directory."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger


def build_loggers(cfg: DictConfig | None, run_dir: Path) -> list[Logger]:
    """Instantiate every entry of the ``logger`` group with ``save_dir=run_dir``."""
    return [instantiate(node, save_dir=str(run_dir)) for node in (cfg or {}).values() if node]

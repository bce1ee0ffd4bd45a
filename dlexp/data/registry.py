"""Dataset registry: ``conf/data/<name>.yaml`` -> (schema, LightningDataModule class)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class DataSpec:
    name: str
    config: type
    module: type


DATASETS: dict[str, DataSpec] = {}


def register_data(name: str, config: type):
    """Class decorator registering a datamodule under ``name`` with its config dataclass."""

    def decorator(cls: type) -> type:
        DATASETS[name] = DataSpec(name, config, cls)
        return cls

    return decorator


def build_datamodule(cfg: DictConfig, seed: int):
    """The datamodule for ``cfg`` (the ``data`` node), split with ``seed``."""
    spec = DATASETS[cfg.name]
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec.config), cfg))
    return spec.module(typed, seed)

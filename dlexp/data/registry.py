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


def data_shape(cfg):
    """The :class:`~dlexp.data.base.DataShape` the ``data`` config ``cfg`` will give."""
    spec = DATASETS[cfg.name]
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec.config), cfg))
    return spec.module.expected_shape(typed)


def build_datamodule(cfg: DictConfig, seed: int, augment: DictConfig | None = None):
    """The datamodule for ``cfg`` (the ``data`` node), split with ``seed``.

    ``augment`` (the ``augment`` node) augments the training split only.
    """
    from dlexp.data.augment import AugmentConfig

    spec = DATASETS[cfg.name]
    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec.config), cfg))
    if augment is not None:
        augment = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), augment))
    return spec.module(typed, seed, augment)

"""Dataset registry: each ``data`` schema's name (:mod:`dlexp.config.data`) bound to the
LightningDataModule class that loads it."""

from __future__ import annotations

from dlexp.config.augment import AugmentConfig
from dlexp.config.data import DATA_SCHEMAS, DataConfig
from dlexp.config.semi import SemiConfig

DATASETS: dict[str, type] = {}  # schema name -> datamodule class


def register_data(name: str):
    """Class decorator binding a datamodule to the schema ``name``; a name without a
    schema, or one already bound, is refused."""

    def decorator(cls: type) -> type:
        if name not in DATA_SCHEMAS:
            raise ValueError(f"dataset {name!r} has no schema in dlexp.config.data")
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered already ({DATASETS[name].__name__})")
        DATASETS[name] = cls
        return cls

    return decorator


def build_datamodule(
    cfg: DataConfig,
    seed: int,
    augment: AugmentConfig | None = None,
    semi: SemiConfig | None = None,
):
    """The datamodule for ``cfg`` (the typed ``data`` node), split with ``seed``;
    ``augment`` augments the training split only; ``semi`` may leave part of it unlabeled."""
    return DATASETS[cfg.name](cfg, seed, augment, semi)

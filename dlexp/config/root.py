"""The root schema :class:`Config`, its registration with Hydra, and :func:`to_config`.

Composition (``dlexp train``) gives a DictConfig whose every group node is typed by its
option's schema; :func:`to_config` turns it (or a run's saved ``config.yaml``, for
``eval``, ``predict``, ``resume`` and the DDP workers) into one typed :class:`Config`,
validated once. Builders receive its typed group nodes.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from dlexp.config.augment import AUGMENT_LEVELS, AugmentConfig
from dlexp.config.callbacks import CALLBACK_SCHEMAS
from dlexp.config.data import DATA_SCHEMAS, DataConfig
from dlexp.config.fields import param, validate
from dlexp.config.logger import LOGGER_SCHEMAS
from dlexp.config.model import MODEL_SCHEMAS
from dlexp.config.model_base import ModelConfig
from dlexp.config.optimizer import OPTIMIZER_SCHEMAS, OptimizerConfig
from dlexp.config.scheduler import SCHEDULER_SCHEMAS, SchedulerConfig
from dlexp.config.semi import SEMI_SCHEMAS, NoSemiConfig, SemiConfig
from dlexp.config.sweeper import OptunaSweeperConfig
from dlexp.config.test import TestConfig
from dlexp.config.trainer import TrainerConfig
from dlexp.config.transfer import TRANSFER_SCHEMAS, TransferConfig
from dlexp.errors import ConfigError

CONF_DIR = Path(os.environ.get("DLEXP_CONF_DIR", Path(__file__).resolve().parent.parent / "conf"))
RUN_ID_ENV = "DLEXP_RUN_ID"


@dataclass
class LossConfig:
    """``loss.*``: cross-entropy against (1-ε)·one-hot + ε/classes (training only)."""

    label_smoothing: float = param(0.1, ge=0, le=1)


@dataclass
class RegularizationConfig:
    """``regularization.*``: penalties (λ/n)·Σ‖W‖² and (λ/n)·Σ‖W‖₁ added to the training
    loss, n = training-set size; ``include_bias`` / ``include_norm`` also penalize biases
    and normalization layers' scales and shifts."""

    l2: float = param(0.0, ge=0)
    l1: float = param(0.0, ge=0)
    include_bias: bool = False
    include_norm: bool = False


@dataclass
class Config:
    """The root of every composed config (``dlexp/conf/config.yaml``)."""

    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    augment: AugmentConfig = MISSING
    transfer: TransferConfig = MISSING
    semi: SemiConfig = MISSING
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    test: TestConfig = field(default_factory=TestConfig)
    logger: dict[str, Any] | None = field(default_factory=dict)
    callbacks: dict[str, Any] | None = field(default_factory=dict)
    seed: int = param(42, ge=0, lt=2**32)
    resume: str | None = None  # a run dir (set by `dlexp train resume=<dir>`) or "auto"
    # train into a directory that is not empty (a run, a sweep, other files): its contents
    # are moved into <dir>/attempts/<n>/ first (without it, such a directory is refused)
    overwrite: bool = False
    # Lightning's routine console lines (GPU/TPU availability, checkpoint restoring ...), its
    # warnings about its own code, and its full model summary; train.log keeps them always
    verbose: bool = False

    def check(self, key: str) -> None:
        """Rules spanning groups, known without torch: the model takes the data's image
        size, the schedule fits the run's length, ``resume`` names a run (and is not
        combined with ``overwrite``), a test-time shift is smaller than the images, the
        alternating flip has the in-memory loader, ``semi`` leaves unlabeled images."""
        from dlexp.resume import run_dir_of

        if self.resume is not None and self.overwrite:
            raise ConfigError(
                "overwrite", True, f"cannot be combined with resume={self.resume} (pick one)"
            )
        if self.resume not in (None, "auto"):
            run_dir_of(self.resume)
        self.model.check_input(self.data.shape().image_size)
        if self.augment.flip_mode == "alternate" and self.data.loader != "memory":
            raise ConfigError(
                "augment.flip_mode",
                "alternate",
                "needs data.loader=memory (the flips follow the loader's epoch)",
            )
        self.scheduler.check_against(self.trainer.max_epochs, "scheduler")
        self.semi.check_against(self.data, "semi")
        size = self.data.shape().image_size
        if self.test.tta == "flip_translate" and self.test.translate >= size:
            raise ConfigError(
                "test.translate", self.test.translate, f"must be < {size}, the image size (px)"
            )


# -- the schemas of each group's options, and a saved config's nodes typed again --------------

GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "data": DATA_SCHEMAS,
    "model": MODEL_SCHEMAS,
    "optimizer": OPTIMIZER_SCHEMAS,
    "scheduler": SCHEDULER_SCHEMAS,
    "augment": dict.fromkeys(AUGMENT_LEVELS, AugmentConfig),
    "transfer": TRANSFER_SCHEMAS,
    "semi": SEMI_SCHEMAS,
}


# Groups of named entries (several at once): the schemas of their documented entries.
ENTRY_SCHEMAS: dict[str, dict[str, type]] = {
    "callbacks": CALLBACK_SCHEMAS,
    "logger": LOGGER_SCHEMAS,
}


def _schema_of(group: str, node: Any) -> type:
    """The schema of a saved group node, from its option name (optimizers: ``_target_``)."""
    schemas = GROUP_SCHEMAS[group]
    if group == "optimizer":
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        by_target = {s._target_: s for s in schemas.values()}
        if target in by_target:
            return by_target[target]
        raise ConfigError("optimizer._target_", target, "must be one of: " + ", ".join(by_target))
    name = node.get("name") if isinstance(node, DictConfig) else None
    if name not in schemas:
        raise ConfigError(f"{group}.name", name, "must be one of: " + ", ".join(schemas))
    return schemas[name]


def to_config(cfg: DictConfig, *, check: bool = True) -> Config:
    """The typed, validated :class:`Config` of a composed config or a saved ``config.yaml``.

    A composed config's nodes are typed already; a saved one's get their schemas again
    from their option names. Raises :class:`~dlexp.errors.ConfigError` (or OmegaConf's
    errors for keys and types, which :func:`dlexp.explain.explain` turns into one line).
    """
    if OmegaConf.get_type(cfg) is not Config:
        typed = OmegaConf.structured(Config)
        typed.semi = NoSemiConfig()  # a run saved before the semi group: supervised only
        for group in GROUP_SCHEMAS:
            if group in cfg:
                typed[group] = OmegaConf.merge(
                    OmegaConf.structured(_schema_of(group, cfg[group])), cfg[group]
                )
        for group, schemas in ENTRY_SCHEMAS.items():  # the documented entries, by their names
            entries = cfg.get(group) or {}
            for name, schema in schemas.items():
                if isinstance(entries.get(name), DictConfig):
                    entries[name] = OmegaConf.merge(OmegaConf.structured(schema), entries[name])
        rest = {k: v for k, v in cfg.items() if k not in GROUP_SCHEMAS and k != "hydra"}
        cfg = OmegaConf.merge(typed, rest)
    check_known_keys(cfg)
    config = OmegaConf.to_object(cfg)
    if check:
        validate(config)
    return config


def check_known_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse a key that no schema declares (``+foo=1``, ``+model.foo=1``): Hydra's ``+``
    adds keys even to typed nodes, and typing would then drop them without a word."""
    from dlexp.compat.hydra import child_node, node_is_none

    schema = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(schema):
        fields = {f.name for f in dataclasses.fields(schema)}
        for key in cfg:
            if key not in fields:
                value = OmegaConf.to_container(cfg, resolve=False)[key]
                known = ", ".join(sorted(fields))
                raise ConfigError(f"{prefix}{key}", value, f"unknown key; keys there: {known}")
    for key in cfg:
        node = child_node(cfg, key)
        if isinstance(node, DictConfig) and not node_is_none(node):
            check_known_keys(node, f"{prefix}{key}.")


def flat_config(config: Config) -> dict[str, Any]:
    """``config`` as ``{"dotted.key": value}`` (lists and empty groups are values)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            out[prefix] = node

    walk("", dataclasses.asdict(config))
    return out


def to_dictconfig(config: Config) -> DictConfig:
    """``config`` as an OmegaConf node (for YAML, loggers and Hydra's instantiate)."""
    return OmegaConf.structured(config)


def to_yaml(config: Config) -> str:
    """The config as YAML: what a run saves as ``config.yaml``."""
    return OmegaConf.to_yaml(to_dictconfig(config), resolve=True)


# -- Hydra registration ------------------------------------------------------------------------


def fresh_id() -> str:
    """A new ``<date>_<time>_<random>`` directory name; the random suffix keeps names made in
    the same second (or on several machines writing to one file system) apart."""
    return time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)


def new_run_id() -> str:
    """A :func:`fresh_id` for the next run or sweep directory, kept in the environment so
    that the processes a launcher starts for the jobs (joblib, SLURM, DDP ranks) resolve the
    same directory."""
    os.environ[RUN_ID_ENV] = fresh_id()
    return os.environ[RUN_ID_ENV]


def current_run_id() -> str:
    """The name ``${run_id:}`` resolves to (set by :func:`new_run_id`)."""
    return os.environ.get(RUN_ID_ENV) or new_run_id()


def register_configs() -> None:
    """Store the root schema and each option's schema (``schema/<group>/<name>``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="dlexp_config", node=Config)
    cs.store(group="schema", name="trainer", node=TrainerConfig)
    cs.store(group="schema/hydra_sweeper", name="optuna", node=OptunaSweeperConfig)
    for group, schemas in (*GROUP_SCHEMAS.items(), *ENTRY_SCHEMAS.items()):
        for name, schema in schemas.items():
            # an instance: its option name is part of the schema, not restated in YAML
            node = schema(name=name) if "name" in schema.__dataclass_fields__ else schema
            cs.store(group=f"schema/{group}", name=name, node=node)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", current_run_id)

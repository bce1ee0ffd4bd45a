"""``dlexp eval ckpt=<run dir or .ckpt> [overrides]``: test a trained run again.

The run's datamodule and model are rebuilt from its saved ``config.yaml`` with the
overrides applied on top (``data=mnist``, ``data.batch_size=256``, ``trainer.accelerator=cpu``
…), the checkpoint is loaded with ``weights_only=True``, Lightning's ``trainer.test`` runs
on the test split and the result is written to ``eval.json`` in the run directory. On the
run's own data it reproduces the training run's test metrics.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlexp.checkpoints import (
    lightning_state_dict,
    load_run_config,
    resolve_checkpoint,
    restore_module,
    run_dir_of,
    safe_load,
)
from dlexp.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError, InputError
from dlexp.io import atomic_write_json, read_json

USAGE = """usage: dlexp eval ckpt=<run dir or .ckpt> [overrides]

Tests the checkpoint (a run directory: its best checkpoint) on the test split of the run's
data config; overrides of data.*, model.*, trainer.* and seed apply on top, and a group
option replaces the run's (data=mnist). Writes eval.json in the run directory.
"""
OVERRIDABLE = ("data", "model", "trainer", "seed")


def eval_command(args: list[str]) -> int:
    """Entry point of ``dlexp eval``."""
    from dlexp.cli import key_values

    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_BAD_INPUT
    options = key_values(args, "eval")
    if "ckpt" not in options:
        raise InputError("ckpt: required (a dlexp run directory or a .ckpt file)")
    overrides = [arg for arg in args if not arg.startswith("ckpt=")]
    ckpt = resolve_checkpoint(options["ckpt"], "ckpt")
    state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
    run_dir = run_dir_of(ckpt)
    if run_dir is None:
        raise InputError(f"ckpt={ckpt}: no config.yaml beside it (eval needs the run's directory)")
    cfg = apply_overrides(load_run_config(run_dir), overrides)
    result = evaluate(cfg, ckpt, state, overrides)
    reference = _training_test(run_dir)
    if reference:
        result["training_test"] = reference
    atomic_write_json(run_dir / "eval.json", result)
    metrics = ", ".join(f"{k} {v:.6f}" for k, v in result["test"].items())
    print(f"{ckpt}: {metrics} ({result['data']['test']} test images) -> {run_dir / 'eval.json'}")
    return EXIT_OK


def evaluate(cfg: DictConfig, ckpt: Path, state: dict, overrides: list[str]) -> dict:
    """Test ``state`` (loaded from ``ckpt``) on the test split of ``cfg``'s data.

    Returns the ``eval.json`` record.
    """
    from dlexp.data import build_datamodule
    from dlexp.trainer import build_trainer

    started = time.time()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.data, seed=cfg.seed)
    datamodule.setup("test")
    module = restore_module(
        cfg.model,
        state,
        in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes,
        image_size=datamodule.image_size,
        key="ckpt",
        shown=str(ckpt),
    )
    # one process, whatever the run trained with (DDP would pad and repeat test samples)
    single = OmegaConf.merge(cfg.trainer, {"strategy": "auto", "devices": 1, "num_nodes": 1})
    trainer = build_trainer(single, callbacks=[], loggers=[], run_dir=ckpt.parent)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    return {
        "checkpoint": str(ckpt),
        "overrides": overrides,
        "data": {
            "name": cfg.data.name,
            "test": len(datamodule.test_split),
            "num_classes": datamodule.num_classes,
        },
        "test": {k: float(v) for k, v in (tested[0] if tested else {}).items()},
        "confusion_matrix": module.test_confusion.compute().tolist(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 3),
    }


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's config with ``overrides`` applied, its data/model/trainer nodes validated."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from dlexp.preflight import explain, quoting_hint

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise InputError(
            f"{exc.override}: cannot parse this override{quoting_hint(exc.override)}"
        ) from None
    for override in parsed:
        key, line = override.key_or_group, override.input_line
        if override.is_sweep_override() or override.is_delete() or override.is_add():
            raise InputError(f"{line}: eval takes plain key=value overrides")
        if key.split(".", 1)[0] not in OVERRIDABLE:
            raise InputError(
                f"{line}: eval uses only {', '.join(OVERRIDABLE)}; cannot override {key}"
            )
        value = override.value()
        if key in ("data", "model", "trainer"):
            cfg[key] = _group_option(key, line)
        elif OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            parent = key.rsplit(".", 1)[0]
            node = OmegaConf.select(cfg, parent)
            known = ", ".join(str(k) for k in node) if isinstance(node, DictConfig) else ""
            raise InputError(
                f"{line}: unknown key '{key}'" + (f"; keys there: {known}" if known else "")
            )
        else:
            OmegaConf.update(cfg, key, value, merge=False)
    try:
        _validate(cfg)
    except OmegaConfBaseException as exc:
        raise InputError(explain(exc, overrides)) from None
    return cfg


_ABSENT = object()


def _group_option(group: str, line: str) -> DictConfig:
    """The ``group=option`` node as ``dlexp train`` would compose it."""
    from dlexp.config import register_configs
    from dlexp.preflight import check_command_line

    register_configs()
    return check_command_line([line]).configs[0][group]


def _validate(cfg: DictConfig) -> None:
    from dlexp.data import DATASETS
    from dlexp.models import MODELS
    from dlexp.schema import validate
    from dlexp.trainer import TrainerConfig

    for key, registry in (("data", DATASETS), ("model", MODELS)):
        name = cfg[key].get("name")
        if name not in registry:
            raise ConfigError(f"{key}.name", name, "must be one of: " + ", ".join(sorted(registry)))
        validate(OmegaConf.merge(OmegaConf.structured(registry[name].config), cfg[key]), f"{key}.")
    validate(OmegaConf.merge(OmegaConf.structured(TrainerConfig), cfg.trainer), "trainer.")
    if not isinstance(cfg.get("seed"), int) or isinstance(cfg.get("seed"), bool):
        raise ConfigError("seed", cfg.get("seed"), "must be an integer")


def _training_test(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / "metrics.json").get("test") or None
    except (OSError, ValueError):
        return None

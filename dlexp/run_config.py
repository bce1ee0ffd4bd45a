"""A run directory's checkpoints and saved ``config.yaml`` (as a typed
:class:`~dlexp.config.Config`), and the overrides ``dlexp eval`` and ``dlexp predict`` may
apply to it.

Every reader of a run's config (``eval``, ``predict``, the DDP workers) goes through
:func:`saved_config`, which types and validates it with :func:`dlexp.config.to_config`,
the function the training path uses. Only keys that change how a trained model is
evaluated may be overridden; the others (the optimizer, the schedule, the training data's
statistics, anything that would not fit the checkpoint) are refused with the list of the
allowed ones. Imports neither torch nor Lightning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlexp.config import Config, to_config
from dlexp.errors import ConfigError, DlexpError, InputError
from dlexp.io import read_json

# What `dlexp eval` may change: which data it tests on (a group option such as data=mnist
# picks another test set; it must give the shape the model was trained for), how the test
# scores it (test-time augmentation) and how the Trainer runs. Not data.normalize (the
# checkpoint carries the training split's statistics), data.classes (the head was built for
# them), nor anything of training.
EVAL_OVERRIDES = (
    "data",
    "data.root",
    "data.download",
    "data.verify_md5",
    "data.test_root",
    "data.test_fraction",
    "data.image_size",
    "data.batch_size",
    "data.loader",
    "data.num_workers",
    "test.tta",
    "test.translate",
    "seed",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.precision",
    "trainer.deterministic",
    "trainer.benchmark",
    "trainer.limit_test_batches",
    "trainer.enable_progress_bar",
    "model.channels_last",
    "model.compile",
    "model.compile_backend",
    "verbose",
)
GROUPS = ("data",)  # the groups whose option eval may swap
# `dlexp predict` runs the model on the images it is given, in batches.
PREDICT_OVERRIDES = ("data.batch_size", "model.channels_last")


def resolve_checkpoint(source: str | Path, key: str) -> Path:
    """The checkpoint file a run directory or a ``.ckpt`` path stands for.

    A dlexp run directory gives its best checkpoint (the file ``metrics.json``'s
    ``best_checkpoint`` names, in the directory's own ``checkpoints/``, so that a copied or
    moved run reads its own) or else ``checkpoints/last.ckpt``.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"{key}={source}: no such file or directory")
    metrics = path / "metrics.json"
    best = ""
    if metrics.is_file():
        try:
            best = read_json(metrics).get("best_checkpoint") or ""
        except ValueError:
            best = ""
    # the run dir's own files only: a copied or moved run never reads the original's
    candidates = [path / "checkpoints" / Path(best).name] if best else []
    candidates.append(path / "checkpoints" / "last.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{key}={source}: no checkpoint found (expected metrics.json's best_checkpoint or "
        "checkpoints/last.ckpt in a dlexp run directory)"
    )


def inside(path: str | Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when it lies there (what a run dir's files store, so
    that a copied or moved run refers to its own files), else as given; "" stays ""."""
    if not str(path):
        return ""
    absolute, base = Path(path).absolute(), Path(run_dir).absolute()
    return str(absolute.relative_to(base)) if absolute.is_relative_to(base) else str(path)


def run_dir_of(checkpoint: Path) -> Path | None:
    """The dlexp run directory (the one holding ``config.yaml``) a checkpoint belongs to."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder
    return None


def read_saved(run_dir: Path) -> DictConfig:
    """The run's ``config.yaml`` as saved (untyped)."""
    path = run_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # unreadable, not YAML
        raise InputError(f"{path}: unreadable run config ({' '.join(str(exc).split())})") from None
    if not isinstance(cfg, DictConfig):
        raise InputError(f"{path}: not a dlexp run config (a mapping of config groups)")
    if cfg.get("resume") is not None:  # how a run was once started, not part of its config
        cfg.resume = None
    return cfg


def saved_config(
    run_dir: Path, overrides: list[str] = (), *, allowed: tuple[str, ...] = (), command: str = ""
) -> Config:
    """The typed config of the run in ``run_dir`` with ``overrides`` (each among ``allowed``)."""
    saved = read_saved(run_dir)
    cfg = _with_overrides(saved.copy(), list(overrides), allowed, command) if overrides else saved
    try:
        config = to_config(cfg)
        if overrides:  # the data must still fit the model
            check_same_shape(to_config(saved, check=False), config)
        return config
    except DlexpError:
        raise
    except OmegaConfBaseException as exc:
        from dlexp.explain import explain

        shown = list(overrides) or [str(run_dir / "config.yaml")]
        raise InputError(explain(exc, shown)) from None


def _with_overrides(
    cfg: DictConfig, overrides: list[str], allowed: tuple[str, ...], command: str
) -> DictConfig:
    from dlexp.compat.hydra import parse_overrides

    for f in dataclasses.fields(Config):  # a node newer than the run (test): its defaults
        if f.name not in cfg and dataclasses.is_dataclass(f.default_factory):
            cfg[f.name] = OmegaConf.structured(f.default_factory)
    for override in parse_overrides(overrides):
        key, line = override.key_or_group, override.input_line
        if override.is_sweep_override() or override.is_delete() or override.is_add():
            raise InputError(f"{line}: dlexp {command} takes plain key=value overrides")
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node:
            known = ", ".join(str(k) for k in node) if isinstance(node, DictConfig) else ""
            raise InputError(
                f"{line}: unknown key '{key}'" + (f"; keys there: {known}" if known else "")
            )
        if key not in allowed:
            raise InputError(
                f"{line}: dlexp {command} cannot change {key} (it does not change how the "
                f"trained model is evaluated, or the checkpoint would not fit); it takes: "
                + ", ".join(allowed)
            )
        if key in GROUPS:  # a group option, composed as `dlexp train` composes it
            cfg[key] = _group_option(key, line)
        else:
            OmegaConf.update(cfg, key, override.value(), merge=False)
    return cfg


def check_same_shape(trained: Config, evaluated: Config) -> None:
    """Refuse data the trained model cannot take: another image size, channel count or
    number of classes than it was trained for."""
    before, after = trained.data.shape(), evaluated.data.shape()
    for key, old, new in (
        ("data.image_size", before.image_size, after.image_size),
        ("data.in_channels", before.in_channels, after.in_channels),
        ("data.num_classes", before.num_classes, after.num_classes),
    ):
        if old != new:
            hint = f" (give data.image_size={old})" if key == "data.image_size" else ""
            raise ConfigError(
                key,
                new,
                f"must be {old}, what the model was trained on ({trained.data.name}){hint}",
            )


def _group_option(group: str, line: str) -> DictConfig:
    """The ``group=option`` node as ``dlexp train`` would compose it (checked there)."""
    from dlexp.config import register_configs, to_dictconfig
    from dlexp.preflight import check_command_line

    register_configs()
    return to_dictconfig(check_command_line([line], files=False).configs[0])[group]

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

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlexp.config import Config, to_config
from dlexp.errors import DlexpError, InputError
from dlexp.io import read_json

# What `dlexp eval` may change: which data it tests on (a group option such as data=mnist
# picks another test set of the same shape) and how the Trainer runs. Not data.normalize
# (the checkpoint carries the training split's statistics), data.image_size or data.classes
# (the model was built for them), nor anything of training.
EVAL_OVERRIDES = (
    "data",
    "data.root",
    "data.download",
    "data.verify_md5",
    "data.test_root",
    "data.test_fraction",
    "data.batch_size",
    "data.loader",
    "data.num_workers",
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
)
# `dlexp predict` runs the model on the images it is given, in batches.
PREDICT_OVERRIDES = ("data.batch_size", "model.channels_last")


def resolve_checkpoint(source: str | Path, key: str) -> Path:
    """The checkpoint file a run directory or a ``.ckpt`` path stands for.

    A dlexp run directory gives its best checkpoint (``metrics.json`` -> ``best_checkpoint``,
    looked up in the directory's own ``checkpoints/`` when the run was moved) or else
    ``checkpoints/last.ckpt``.
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
    candidates = [Path(best), path / "checkpoints" / Path(best).name] if best else []
    candidates.append(path / "checkpoints" / "last.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{key}={source}: no checkpoint found (expected metrics.json's best_checkpoint or "
        "checkpoints/last.ckpt in a dlexp run directory)"
    )


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
    return cfg


def saved_config(
    run_dir: Path, overrides: list[str] = (), *, allowed: tuple[str, ...] = (), command: str = ""
) -> Config:
    """The typed config of the run in ``run_dir`` with ``overrides`` (each among ``allowed``)."""
    cfg = read_saved(run_dir)
    if overrides:
        cfg = _with_overrides(cfg, list(overrides), allowed, command)
    try:
        return to_config(cfg)
    except DlexpError:
        raise
    except OmegaConfBaseException as exc:
        from dlexp.preflight import explain

        shown = list(overrides) or [str(run_dir / "config.yaml")]
        raise InputError(explain(exc, shown)) from None


def _with_overrides(
    cfg: DictConfig, overrides: list[str], allowed: tuple[str, ...], command: str
) -> DictConfig:
    from dlexp.compat.hydra import parse_overrides

    for override in parse_overrides(overrides):
        key, line = override.key_or_group, override.input_line
        if override.is_sweep_override() or override.is_delete() or override.is_add():
            raise InputError(f"{line}: dlexp {command} takes plain key=value overrides")
        if key not in allowed:
            raise InputError(
                f"{line}: dlexp {command} cannot change {key} (it does not change how the "
                f"trained model is evaluated, or the checkpoint would not fit); it takes: "
                + ", ".join(allowed)
            )
        if "." not in key:  # a group option, composed as `dlexp train` composes it
            if key == "seed":
                cfg[key] = override.value()
            else:
                cfg[key] = _group_option(key, line)
            continue
        node = OmegaConf.select(cfg, key.rsplit(".", 1)[0])
        if not isinstance(node, DictConfig) or key.rsplit(".", 1)[1] not in node:
            known = ", ".join(str(k) for k in node) if isinstance(node, DictConfig) else ""
            raise InputError(
                f"{line}: unknown key '{key}'" + (f"; keys there: {known}" if known else "")
            )
        OmegaConf.update(cfg, key, override.value(), merge=False)
    return cfg


def _group_option(group: str, line: str) -> DictConfig:
    """The ``group=option`` node as ``dlexp train`` would compose it (checked there)."""
    from dlexp.config import register_configs, to_dictconfig
    from dlexp.preflight import check_command_line

    register_configs()
    return to_dictconfig(check_command_line([line], files=False).configs[0])[group]

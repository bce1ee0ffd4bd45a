"""Check a ``dlexp train`` command line before Hydra runs it.

Every job the command line describes (each point of a multirun grid, including sweeps that
an experiment file declares in ``hydra.sweeper.params``) is composed and validated, so bad
input is reported as one line naming the key, the value and what is allowed, before any
directory is created or any data is loaded. A job that differs from the others only in
plain values (``seed=0,1,2``, ``optimizer.lr=...``) is the shared composition with those
values set, as Hydra would set them; one that picks other options of a group is composed.

Everything here runs without torch or Lightning: a typo costs a fraction of a second.
What needs the model built (stage names, torchvision weights, the accelerator) is
:func:`dlexp.buildcheck.check_buildable`, run once per distinct model after these checks.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlexp.bounds import RUN_DIR_ROOM, check_job_count, check_override_sizes, check_path_length
from dlexp.compat.hydra import (
    apply_value_overrides,
    grid_jobs,
    parse_overrides,
    value_overrides_only,
)
from dlexp.config import CONF_DIR, Config, to_config
from dlexp.config.sweeper import OPTUNA_SWEEPER, check_optuna_sweep
from dlexp.errors import DlexpError, InputError, shorten
from dlexp.explain import explain, first_line
from dlexp.fold_sweep import all_folds_line, every_fold
from dlexp.rundir import check_output_dir


@dataclass
class CheckedCommand:
    """The typed, validated configs of every job a command line describes.

    ``grid``: a multirun of Hydra's grid sweeper, whose every job is among ``configs`` (it
    can run with ``hydra/sweeper=grid``, which does not compose each job a second time).
    ``by_overrides`` finds a job's config from its override lines (Hydra's
    ``overrides.task``), so a job run in this process is not typed and checked again.
    """

    configs: list[Config]
    multirun: bool
    grid: bool = False
    basic_launcher: bool = False  # Hydra's BasicLauncher runs the jobs (see its prechecked form)
    home_dirs: list[str] = field(default_factory=list)  # see home_dir_overrides
    output_dir: str = ""  # hydra.run.dir, or hydra.sweep.dir of a multirun
    by_overrides: dict[frozenset[str], Config] = field(default_factory=dict)
    expanded: dict[str, str] = field(default_factory=dict)  # override lines run as others

    def config_for(self, overrides: list[str]) -> Config | None:
        return self.by_overrides.get(frozenset(overrides))


def check_command_line(
    overrides: list[str],
    *,
    multirun: bool = False,
    config_dir: str | None = None,
    config_name: str = "config",
    files: bool = True,
    writes: bool = False,
) -> CheckedCommand:
    """Compose and validate every job of a command line.

    ``multirun`` is the command line's ``-m``; a config may also set ``hydra.mode: MULTIRUN``
    (e.g. an ``hparams_search`` file). ``files``: also check that the files the configs
    name exist. ``writes``: the command will train, so its run (or sweep) directory must be
    free and hold no other run (:func:`dlexp.rundir.check_output_dir`). Raises
    :class:`~dlexp.errors.DlexpError` subclasses.
    """
    extra = (
        [f"hydra.searchpath=[file://{Path(config_dir).expanduser().resolve()}]"]
        if config_dir
        else []
    )
    check_override_sizes(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base=None, job_name="train"):
        loader = GlobalHydra.instance().config_loader()
        parsed = parse_overrides(overrides, loader)
        all_folds = all_folds_line(parsed)  # data.fold=all: see dlexp.fold_sweep
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        fixed = [line for line in fixed if line != all_folds]
        swept = [o for o in parsed if o.is_sweep_override()]
        base = _compose(config_name, fixed + extra, overrides)
        multirun = multirun or str(base.hydra.get("mode")) in ("MULTIRUN", "RunMode.MULTIRUN")
        if all_folds:
            folds = every_fold(all_folds, base, multirun)
            expanded = [folds if line == all_folds else line for line in overrides]
            checked = check_command_line(
                expanded, multirun=multirun, config_dir=config_dir, config_name=config_name,
                files=files, writes=writes,
            )  # fmt: skip
            checked.expanded = {all_folds: folds}
            return checked
        if swept and not multirun:
            o = swept[0]
            raise InputError(
                f"{o.input_line}: a list of values is a sweep; add -m/--multirun to run one job "
                f"per value, or write {o.get_key_element()}=[...] for a list"
            )
        jobs = _expand_sweep(base, fixed, overrides, loader) if multirun else [fixed]
        checked = CheckedCommand(
            [],
            multirun,
            grid=multirun and _is_grid(base),
            basic_launcher=multirun and _is_basic_launcher(base),
        )
        typed_base = None
        for job in jobs:
            own = parse_overrides([line for line in job if line not in fixed], loader)
            if not own:
                typed_base = typed_base or _typed(base, overrides, files)
                config = typed_base
            elif not extra and value_overrides_only(own, loader):
                config = _typed(_with_values(base, own, overrides), overrides, files)
            else:
                config = _typed(_compose(config_name, job + extra, overrides), overrides, files)
            checked.configs.append(config)
            checked.by_overrides[frozenset(job)] = config
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        checked.output_dir = str(OmegaConf.select(base, key))
        if writes:  # first: a refused command leaves even the directory's mtime as it was
            check_output_dir(checked)
        check_writable(key, checked.output_dir)
        checked.home_dirs = home_dir_overrides(base)
        return checked


def home_dir_overrides(cfg: DictConfig) -> list[str]:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` overrides with a leading ``~`` expanded.

    Hydra creates these directories as written: ``hydra.run.dir="~/runs/a"`` would make a
    folder named ``~`` in the working directory. Only the ``~`` (or ``~user``) is replaced;
    the rest of the value, interpolations included, is given back to Hydra as it was.
    """
    overrides = []
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if not isinstance(node, DictConfig):
            continue
        raw = OmegaConf.to_container(node, resolve=False).get(leaf)
        if not isinstance(raw, str) or not raw.startswith("~"):
            continue
        head, sep, rest = raw.partition("/")
        home = os.path.expanduser(head)
        value = home + sep + rest
        quote = "'" if "'" not in value else '"'
        if home != head and quote not in value:
            overrides.append(f"{key}={quote}{value}{quote}")
    return overrides


def check_writable(key: str, directory: str) -> None:
    """Raise :class:`InputError` unless ``directory`` can be created (or written) here.

    An existing directory (a run to resume, a sweep to finish) must also let this process
    write into every folder below it that a run writes into (``checkpoints/``, ...): found
    now, not when the first checkpoint is saved after an epoch of training.
    """
    path = check_path_length(key, directory, RUN_DIR_ROOM)
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is a file")
        tempfile.TemporaryDirectory(dir=ancestor).cleanup()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"{key}={shorten(directory)}: cannot write there ({reason})") from None
    if ancestor == path:
        blocked = _unwritable_below(path)
        if blocked:
            raise InputError(
                f"{key}={shorten(directory)}: cannot write into {blocked} (not writable by this "
                "process; a run writes checkpoints and logs there)"
            )


def _unwritable_below(root: Path, depth: int = 3) -> Path | None:
    """The first folder below ``root`` (sweep dir / job dir / ``checkpoints``: ``depth``
    levels, links not followed) this process cannot write into; None when there is none."""
    if depth == 0:
        return None
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return root
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and entry.name != "attempts":
            folder = Path(entry.path)
            if not os.access(folder, os.W_OK | os.X_OK):  # sees modes, ACLs, read-only mounts
                return folder
            blocked = _unwritable_below(folder, depth - 1)
            if blocked:
                return blocked
    return None


def _expand_sweep(
    base: DictConfig, fixed: list[str], overrides: list[str], loader
) -> list[list[str]]:
    """The override lists of a basic-sweeper grid (config-declared params, then the CLI's).

    Optuna draws its own points: the fixed part is checked, and each searched key at the
    ends of its range (:func:`dlexp.config.sweeper.check_optuna_sweep`).
    """
    sweeper = base.hydra.sweeper
    if sweeper.get("_target_") == OPTUNA_SWEEPER:
        swept = [line for line in overrides if line not in fixed]  # join the search space
        checkpoint = OmegaConf.select(base, "callbacks.model_checkpoint")
        try:
            ends = check_optuna_sweep(sweeper, checkpoint, swept)
        except DlexpError:
            raise
        except Exception as exc:  # Hydra's grammar errors in hydra.sweeper.params
            raise InputError(f"hydra.sweeper.params: {first_line(str(exc))}") from None
        return [fixed, *([*fixed, end] for end in ends)]
    if not _is_grid(base):
        return [fixed]
    declared = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = parse_overrides(declared + overrides, loader)
    check_job_count(parsed)
    try:
        return grid_jobs(parsed)
    except Exception as exc:  # e.g. range() / interval() given to the grid sweeper
        raise InputError(f"sweep: {first_line(str(exc))}") from None


def _is_grid(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s sweeper is Hydra's BasicSweeper (or dlexp's form of it)."""
    return str(cfg.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")


def _is_basic_launcher(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s launcher is Hydra's BasicLauncher (the jobs one by one, here)."""
    return str(cfg.hydra.launcher.get("_target_", "")).endswith(".BasicLauncher")


def _compose(config_name: str, job: list[str], all_overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=job, return_hydra_config=True)
    except Exception as exc:  # Hydra reports composition errors with several exception types
        raise InputError(explain(exc, all_overrides)) from None


def _with_values(base: DictConfig, own: list[Override], all_overrides: list[str]) -> DictConfig:
    """``base`` with the value overrides ``own`` applied as Hydra's composition applies them."""
    cfg = copy.deepcopy(base)
    try:
        apply_value_overrides(own, cfg)
    except Exception as exc:  # the exceptions a composition with these overrides raises
        raise InputError(explain(exc, all_overrides)) from None
    return cfg


def _typed(cfg: DictConfig, overrides: list[str], files: bool) -> Config:
    """The typed, validated :class:`Config` of one composed job (Hydra's node left out)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    try:
        config = to_config(cfg)
    except DlexpError:
        raise
    except OmegaConfBaseException as exc:
        raise InputError(explain(exc, overrides)) from None
    if files:
        check_files(config)
    return config


def check_files(config: Config) -> None:
    """The files a config names exist: the data (or it may be downloaded), the transfer
    source (checked by its schema) and the run to resume (checked by the root schema)."""
    from dlexp.data_files import check_data_files

    data = config.data
    check_data_files(
        data.name,
        getattr(data, "root", None),
        getattr(data, "download", False),
        test_root=getattr(data, "test_root", None),
    )

"""Check a ``dlexp train`` command line before Hydra runs it.

Every job the command line describes (each point of a multirun grid, including sweeps that
an experiment file declares in ``hydra.sweeper.params``) is composed and validated, so bad
input is reported as one line naming the key, the value and what is allowed, before any
directory is created or any data is loaded. A job that differs from the others only in
plain values (``seed=0,1,2``, ``optimizer.lr=...``) is the shared composition with those
values set, as Hydra would set them; one that picks other options of a group is composed.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlexp.config import CONF_DIR
from dlexp.errors import DlexpError, InputError
from dlexp.schema import validate


@dataclass
class CheckedCommand:
    """The validated configs of every job a command line describes.

    ``grid``: a multirun of Hydra's grid sweeper, whose every job is among ``configs`` (it
    can run with ``hydra/sweeper=grid``, which does not compose each job a second time).
    """

    configs: list[DictConfig]
    multirun: bool
    grid: bool = False
    home_dirs: list[str] = field(default_factory=list)  # see home_dir_overrides


def check_command_line(
    overrides: list[str],
    *,
    multirun: bool = False,
    config_dir: str | None = None,
    config_name: str = "config",
) -> CheckedCommand:
    """Compose and validate every job of a command line.

    ``multirun`` is the command line's ``-m``; a config may also set ``hydra.mode: MULTIRUN``
    (e.g. an ``hparams_search`` file). Raises :class:`~dlexp.errors.DlexpError` subclasses.
    """
    extra = (
        [f"hydra.searchpath=[file://{Path(config_dir).expanduser().resolve()}]"]
        if config_dir
        else []
    )
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base=None, job_name="train"):
        loader = GlobalHydra.instance().config_loader()
        try:
            parser = OverridesParser.create(config_loader=loader)
            parsed = parser.parse_overrides(overrides)
        except OverrideParseException as exc:
            raise InputError(
                f"{exc.override}: cannot parse this override ({_first(exc.message)})"
                + quoting_hint(exc.override)
            ) from None
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        swept = [o for o in parsed if o.is_sweep_override()]
        base = _compose(config_name, fixed + extra, overrides)
        multirun = multirun or str(base.hydra.get("mode")) in ("MULTIRUN", "RunMode.MULTIRUN")
        if swept and not multirun:
            o = swept[0]
            raise InputError(
                f"{o.input_line}: a list of values is a sweep; add -m/--multirun to run one job "
                f"per value, or write {o.get_key_element()}=[...] for a list"
            )
        jobs = _expand_sweep(base, fixed, overrides, loader) if multirun else [fixed]
        configs = []
        for job in jobs:
            own = parser.parse_overrides([line for line in job if line not in fixed])
            if not own:
                cfg = base
            elif not extra and _plain_values(own, loader):
                cfg = _with_values(base, own, overrides)
            else:
                cfg = _compose(config_name, job + extra, overrides)
            configs.append(_validated(cfg))
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        check_writable(key, OmegaConf.select(base, key))
        return CheckedCommand(
            configs, multirun, grid=multirun and _is_grid(base), home_dirs=home_dir_overrides(base)
        )


def quoting_hint(override: str) -> str:
    """Advice for an override Hydra cannot parse because of a ``~`` in its value.

    Hydra's override grammar takes ``~`` only at the start of an override (``~key``
    deletes a key) or inside a quoted value; bash leaves ``data.root=~/x`` as it is (a
    dotted key is no variable name), so the ``~`` reaches Hydra, which rejects it.
    """
    key, sep, value = override.partition("=")
    if not sep or "~" not in value or value[:1] in ("'", '"'):
        return ""
    if "," in value or '"' in value:
        return "; Hydra takes ~ only inside a quoted value (or write $HOME instead of ~)"
    return (
        "; Hydra takes ~ only inside a quoted value: write "
        f"'{key}=\"{value}\"' (or $HOME instead of ~)"
    )


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
    """Raise :class:`InputError` unless ``directory`` can be created (or written) here."""
    path = Path(directory).expanduser().absolute()
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is a file")
        tempfile.TemporaryDirectory(dir=ancestor).cleanup()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"{key}={directory}: cannot write there ({reason})") from None


def _expand_sweep(
    base: DictConfig, fixed: list[str], overrides: list[str], loader
) -> list[list[str]]:
    """The override lists of a basic-sweeper grid (config-declared params, then the CLI's).

    Other sweepers (Optuna) draw their own points: only the fixed part is checked up front.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    sweeper = base.hydra.sweeper
    if not _is_grid(base):
        return [fixed]
    declared = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(declared + overrides)
    try:
        return BasicSweeper.split_arguments(parsed, None)[0]
    except Exception as exc:  # e.g. range() / interval() given to the grid sweeper
        raise InputError(f"sweep: {_first(str(exc))}") from None


def _is_grid(cfg: DictConfig) -> bool:
    """Whether ``cfg``'s sweeper is Hydra's BasicSweeper (or dlexp's form of it)."""
    return str(cfg.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")


def _compose(config_name: str, job: list[str], all_overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=job, return_hydra_config=True)
    except Exception as exc:  # Hydra reports composition errors with several exception types
        raise InputError(explain(exc, all_overrides)) from None


def _plain_values(own: list[Override], loader) -> bool:
    """Whether ``own`` only changes values (no group, ``+``/``~``, package or ``hydra.``)."""
    return all(
        o.type == OverrideType.CHANGE
        and o.package is None
        and not o.is_hydra_override()
        and not loader.repository.group_exists(o.key_or_group)
        for o in own
    )


def _with_values(base: DictConfig, own: list[Override], all_overrides: list[str]) -> DictConfig:
    """``base`` with the value overrides ``own`` applied as Hydra's composition applies them."""
    cfg = copy.deepcopy(base)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(own, cfg)
    except Exception as exc:  # the exceptions a composition with these overrides raises
        raise InputError(explain(exc, all_overrides)) from None
    return cfg


def _validated(cfg: DictConfig) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    try:
        validate(cfg)
    except DlexpError:
        raise
    except OmegaConfBaseException as exc:
        raise InputError(explain(exc, [])) from None
    return cfg


# -- turning Hydra's and OmegaConf's messages into one line ----------------------------------

_TYPE_WORDS = {
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
    "String": "a string",
}


def explain(exc: BaseException, overrides: list[str]) -> str:
    """One readable line for a composition error, naming the override it comes from."""
    if isinstance(exc, DlexpError):
        return str(exc)
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        group = (exc.missing_cfg_file or "").rsplit("/", 1)[0]
        wanted = _override_for(group, overrides) or exc.missing_cfg_file
        options = ", ".join(o for o in sorted(exc.options) if not o.startswith("_"))
        return f"{wanted}: no such option in group '{group}'; available: {options}"
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = cause.full_key
        given = _override_for(key, overrides) or key
        msg = _first(str(cause.msg if hasattr(cause, "msg") else cause))
        if "not in" in msg or "Key '" in msg:
            known = _known_keys(cause)
            hint = f"; keys there: {known}" if known else ""
            return f"{given}: unknown key '{key}'{hint}"
        match = re.search(r"converted to (\w+)", msg)
        if match:
            return f"{given}: {key} must be {_TYPE_WORDS.get(match.group(1), match.group(1))}"
        return f"{given}: {msg}"
    text = str(exc)
    if "Ambiguous value for argument" in text:
        return f"{_first(text)}: add -m/--multirun to sweep, or write key=[a,b] for a list"
    if "Could not append to config" in text:
        key = re.search(r"at '([^']+)'", text)
        return f"+{key.group(1) if key else '?'}: the key exists already; drop the '+'"
    if "Could not delete from config" in text or "Could not override" in text:
        return _first(text)
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return (
            f"{mark.name}: malformed YAML at line {mark.line + 1}, column {mark.column + 1}: "
            f"{exc.problem or exc.context}"
        )
    if isinstance(exc, (OSError, ValueError)) and "yaml" in text.lower():
        return f"malformed YAML: {_first(text)}"
    return _first(text)


def _override_for(key: str, overrides: list[str]) -> str | None:
    key = key.split("[", 1)[0]  # list items: model.hidden_sizes[1] -> model.hidden_sizes
    for o in overrides:
        name = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if name == key:
            return o
    return None


def _known_keys(cause: OmegaConfBaseException) -> str:
    node = getattr(cause, "parent_node", None)
    if node is None:
        return ""
    try:
        return ", ".join(str(k) for k in node if not str(k).startswith("_"))
    except Exception:
        return ""


def _first(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""

"""Hydra's and OmegaConf's private APIs that dlexp uses, and a structured view of their errors.

Only hydra and omegaconf are imported here (never torch or Lightning): ``dlexp train`` checks
its command line with this module before anything heavy is loaded. Hydra's private modules are
imported where they are used, so a change in one breaks only the function that needs it (and
its contract test in ``tests/test_compat.py``), not every command.

Wrapped private APIs:

* :func:`hydra_args_parser`: ``hydra._internal.utils.get_args_parser``
* :func:`apply_value_overrides`: ``hydra._internal.config_loader_impl.ConfigLoaderImpl.
  _apply_overrides_to_config``
* :func:`grid_jobs` and :data:`BasicSweeper`: ``hydra._internal.core_plugins.basic_sweeper.
  BasicSweeper`` (and its ``split_arguments``)
* :func:`child_node` and :func:`node_is_none`: ``Container._get_node`` and ``Node._is_none``
* :func:`value_overrides_only`: ``ConfigLoaderImpl.repository`` (its ``group_exists``)
* :class:`~dlexp.compat.hydra.launch.JobConfigs` and :data:`BasicLauncher`
  (:mod:`dlexp.compat.hydra.launch`): ``hydra._internal.core_plugins.basic_launcher.
  BasicLauncher``, ``config_loader_impl.get_overrides_dirname`` and the fields of the
  ``hydra`` node that composition sets from a job's overrides

:func:`describe_config_error` (:mod:`dlexp.compat.hydra.errors`) reads a composition
error's kind, key, value, expected type, known keys or group options from the exception
types and attributes Hydra and OmegaConf provide, and from their message text only where
they provide nothing else (each such place says so).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.errors import OverrideParseException
from omegaconf import DictConfig, ListConfig, Node

from dlexp.compat.hydra.errors import (
    ConfigErrorInfo,
    ErrorKind,
    _first,
    describe_config_error,
)

if TYPE_CHECKING:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.types import Override

__all__ = [
    "BasicLauncher",
    "BasicSweeper",
    "ConfigErrorInfo",
    "ErrorKind",
    "apply_value_overrides",
    "child_node",
    "describe_config_error",
    "grid_jobs",
    "hydra_args_parser",
    "node_is_none",
    "parse_overrides",
    "quoting_hint",
    "value_overrides_only",
]


# -- the command line --------------------------------------------------------------------------


def hydra_args_parser() -> argparse.ArgumentParser:
    """The parser of a Hydra app's command line, as ``@hydra.main`` parses it.

    Its namespace has ``overrides`` (list of str), ``multirun``, ``config_dir``,
    ``config_name``, ``help``, ``hydra_help``, ``info``, ``shell_completion``, ...
    Wraps ``hydra._internal.utils.get_args_parser()``; a bad flag raises
    :class:`~dlexp.errors.InputError` (one line) instead of printing the usage and exiting.
    """
    from hydra._internal.utils import get_args_parser

    from dlexp.errors import InputError

    parser = get_args_parser()

    def error(message: str):
        raise InputError(f"{message} (see: dlexp train --help)")

    parser.error = error
    return parser


# -- overrides and sweeps ----------------------------------------------------------------------


def parse_overrides(lines: Sequence[str], config_loader: Any = None) -> list[Override]:
    """Hydra's parse of override lines (``config_loader`` resolves group names); a line it
    cannot parse raises :class:`~dlexp.errors.InputError` naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dlexp.errors import InputError, shorten

    parser = OverridesParser.create(config_loader=config_loader)
    try:
        return parser.parse_overrides(list(lines))
    except OverrideParseException as exc:
        reason = _first(exc.message)
        raise InputError(
            f"{shorten(exc.override)}: cannot parse this override ({shorten(reason)})"
            f"{quoting_hint(exc.override)}"
        ) from None
    except ValueError as exc:  # int() of more digits than Python converts (sys.int_info)
        line = next((o for o in lines if _fails_to_parse(parser, o)), "override")
        reason = "an integer of more than 4300 digits" if "digits" in str(exc) else str(exc)
        raise InputError(
            f"{shorten(line)}: cannot parse this override ({_first(reason)})"
        ) from None


def _fails_to_parse(parser: Any, line: str) -> bool:
    try:
        parser.parse_override(line)
    except (OverrideParseException, ValueError):
        return True
    return False


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


def apply_value_overrides(overrides: Sequence[Override], cfg: DictConfig) -> None:
    """Apply parsed overrides to ``cfg`` in place, exactly as Hydra's composition applies them.

    ``key=value``, ``+key=value``, ``++key=value`` and ``~key[=value]`` (not config groups: an
    override with a package is an error). Raises what :func:`hydra.compose` raises for the same
    overrides: :class:`~hydra.errors.ConfigCompositionException`, with the OmegaConf error as
    ``__cause__`` where there is one. Wraps the private static method
    ``ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)``.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


def value_overrides_only(overrides: Sequence[Override], config_loader: Any) -> bool:
    """Whether ``overrides`` only set values of existing keys (no config group, ``+``/``~``,
    package or ``hydra.`` key): applied to a composed config, they give the config that a
    composition with them gives."""
    from hydra.core.override_parser.types import OverrideType

    return all(
        o.type == OverrideType.CHANGE
        and o.package is None
        and not o.is_hydra_override()
        and not config_loader.repository.group_exists(o.key_or_group)
        for o in overrides
    )


def grid_jobs(overrides: Sequence[Override]) -> list[list[str]]:
    """The jobs Hydra's basic (grid) sweeper runs for ``overrides``, in the order it runs them.

    One list of override strings per job: the cartesian product of the sweeps (``a=1,2``),
    each fixed override in every job, the last value of a key winning, keys in first-seen
    order. Raises :class:`~hydra.errors.HydraException` for sweeps the grid cannot expand
    (``range()`` is expanded, ``interval()`` is not). Wraps
    ``BasicSweeper.split_arguments(overrides, max_batch_size=None)`` (one batch).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    (jobs,) = BasicSweeper.split_arguments(list(overrides), None)
    return jobs


def __getattr__(name: str) -> Any:
    # BasicSweeper and BasicLauncher are looked up at each access, not bound here once: Hydra's
    # plugin scan (once per process) executes Hydra's plugin modules again, which makes new
    # classes, and then the hydra_plugins modules, whose subclasses must derive from those.
    if name == "BasicSweeper":
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
    if name == "BasicLauncher":
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        return BasicLauncher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- config nodes ------------------------------------------------------------------------------


def child_node(cfg: DictConfig | ListConfig, key: Any) -> Node | None:
    """The node at ``key`` of ``cfg``, not resolved or converted.

    Unlike ``cfg[key]`` it neither resolves interpolations nor raises for ``???``. A key the
    config does not have: ``None``, or (a structured or struct config) the access error.
    Wraps ``Container._get_node(key)``.
    """
    return cfg._get_node(key)


def node_is_none(node: Node) -> bool:
    """Whether ``node`` holds ``None`` (e.g. an optional sub-config that is not set).

    Wraps ``Node._is_none()``.
    """
    return node._is_none()

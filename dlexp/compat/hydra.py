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

:func:`describe_config_error` reads a composition error's kind, key, value, expected type,
known keys or group options from the exception types and attributes Hydra and OmegaConf
provide, and from their message text only where they provide nothing else (each such place
says so).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import (
    BooleanNode,
    BytesNode,
    DictConfig,
    EnumNode,
    FloatNode,
    IntegerNode,
    ListConfig,
    Node,
    OmegaConf,
    PathNode,
    StringNode,
)
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

if TYPE_CHECKING:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.types import Override

__all__ = [
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
    # BasicSweeper is looked up at each access, not bound here once: Hydra's plugin scan (once
    # per process) executes Hydra's plugin modules again, which makes a new BasicSweeper class,
    # and then the hydra_plugins modules, whose subclasses must derive from that new class.
    if name == "BasicSweeper":
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
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


# -- composition errors ------------------------------------------------------------------------

ErrorKind = Literal[
    "unknown_key",  # key: the full key; known_keys: the keys of its parent node
    "wrong_type",  # key, value (the value given), expected_type (int, float, bool, an Enum...)
    "missing_option",  # key: the group; value: the option asked for; options: the group's
    "append_existing",  # +key=value for a key that exists; key
    "delete_missing",  # ~key for a key that does not exist (or holds another value); key, value
    "parse",  # an override the grammar rejects; override
    "needs_multirun",  # a sweep (key=a,b) without --multirun; key, override
    "other",
]


@dataclass(frozen=True)
class ConfigErrorInfo:
    """What went wrong in a composition or validation, read from the exception.

    ``key``: the full dotted key (``optimizer.lr``), or the group for ``missing_option``.
    ``value``: the value given, where the exception has it (``None`` otherwise).
    ``expected_type``: the Python type the key's node holds (``int``, ``float``, ``bool``,
    ``str``, ``bytes``, ``pathlib.Path``, an ``Enum`` subclass, ``list``, ``dict`` or a
    dataclass), for ``wrong_type``; ``None`` when the node has no single type.
    ``known_keys``: every key of the parent node of an unknown key, in its order (including
    ``_target_``-style and, at the top of a composition, ``hydra``).
    ``options``: every option of the group, sorted (including ``_``-prefixed ones).
    ``message``: the first line of the most specific message (OmegaConf's rather than Hydra's
    wrapper; without OmegaConf's ``full_key:``/``object_type=`` lines).
    ``override``: the override as written, where the exception names it (``parse``,
    ``needs_multirun``). ``config_path``: the config file the error arose in (``opt/adam``),
    where Hydra names it. ``error``: the exception the details were read from.
    """

    kind: ErrorKind
    key: str | None = None
    value: Any = None
    expected_type: type | None = None
    known_keys: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    message: str = ""
    override: str | None = None
    config_path: str | None = None
    error: BaseException | None = field(default=None, repr=False, compare=False)


def describe_config_error(exc: BaseException) -> ConfigErrorInfo:
    """A structured description of an error from :func:`hydra.compose`, from
    :func:`apply_value_overrides`, or from OmegaConf while validating a config."""
    config_path = _config_path(exc)
    if isinstance(exc, OverrideParseException):
        return ConfigErrorInfo(
            "parse", message=_first(exc.message), override=exc.override, error=exc
        )
    if isinstance(exc, MissingConfigException):
        if exc.options is not None and exc.missing_cfg_file:
            # Hydra gives the missing file as "<group>/<option>" and the group's options, but
            # not the group itself: it is the path up to the last "/".
            group, _, option = exc.missing_cfg_file.rpartition("/")
            return ConfigErrorInfo(
                "missing_option",
                key=group,
                value=option,
                options=tuple(sorted(exc.options)),
                message=_first(str(exc)),
                config_path=config_path,
                error=exc,
            )
        return ConfigErrorInfo(
            "other",
            key=exc.missing_cfg_file,
            message=_first(str(exc)),
            config_path=config_path,
            error=exc,
        )
    omega = _omegaconf_error(exc)
    if omega is not None:
        return _describe_omegaconf(omega, config_path)
    if isinstance(exc, ConfigCompositionException):
        return _describe_composition(exc, config_path)
    return ConfigErrorInfo("other", message=_first(str(exc)), config_path=config_path, error=exc)


def _omegaconf_error(exc: BaseException) -> OmegaConfBaseException | None:
    """``exc`` or the OmegaConf error it was raised from.

    Hydra chains them explicitly (``raise ... from ex``: ``__cause__``) when applying command
    line overrides, and implicitly (``__context__``) when merging a config file.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OmegaConfBaseException):
            return exc
        seen.add(id(exc))
        nxt = exc.__cause__
        if nxt is None and not exc.__suppress_context__:
            nxt = exc.__context__
        exc = nxt
    return None


def _describe_omegaconf(err: OmegaConfBaseException, config_path: str | None) -> ConfigErrorInfo:
    key = str(err.full_key) if err.full_key not in (None, "") else None
    message = _first(err.msg if err.msg is not None else str(err))
    common = {"key": key, "message": message, "config_path": config_path, "error": err}
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and _is_unknown_key(err):
        parent = err.parent_node
        known = tuple(str(k) for k in parent) if isinstance(parent, DictConfig) else ()
        return ConfigErrorInfo("unknown_key", known_keys=known, **common)
    if isinstance(err, ValidationError):
        expected = _node_type(err.child_node) or _type_from_message(message)
        return ConfigErrorInfo("wrong_type", value=err.value, expected_type=expected, **common)
    return ConfigErrorInfo("other", value=err.value, **common)


def _is_unknown_key(err: OmegaConfBaseException) -> bool:
    parent = err.parent_node
    if isinstance(parent, DictConfig) and err.key is not None:
        try:
            return err.key not in parent
        except OmegaConfBaseException:
            pass
    # Fallback, text: without the parent node, only OmegaConf's message tells a missing key
    # ("Key 'k' not in 'Schema'", "Key 'k' is not in struct") from other key errors.
    return re.match(r"Key '.*' (is )?not in\b", str(err.msg or err)) is not None


_NODE_TYPES: tuple[tuple[type, type], ...] = (
    (IntegerNode, int),
    (FloatNode, float),
    (BooleanNode, bool),
    (StringNode, str),
    (BytesNode, bytes),
    (PathNode, Path),
    (ListConfig, list),
)


def _node_type(node: Any) -> type | None:
    """The Python type a typed node holds, from its class (public OmegaConf node types)."""
    if isinstance(node, EnumNode):
        return node.enum_type
    for node_class, python_type in _NODE_TYPES:
        if isinstance(node, node_class):
            return python_type
    if isinstance(node, DictConfig):
        schema = OmegaConf.get_type(node)
        return schema if isinstance(schema, type) else dict
    return None  # AnyNode, UnionNode: no single type


_TYPE_NAMES = {
    "Integer": int,
    "Float": float,
    "Boolean": bool,
    "String": str,
    "Bytes": bytes,
    "Path": Path,
}


def _type_from_message(message: str) -> type | None:
    # Fallback, text: when OmegaConf has no node for the key (a new key of a typed dict), only
    # its message names the type: "Value 'abc' of type 'str' could not be converted to Integer".
    match = re.search(r"could not be converted to (\w+)", message)
    return _TYPE_NAMES.get(match.group(1)) if match else None


# Hydra raises these ConfigCompositionExceptions with nothing but a message (no attributes, no
# OmegaConf cause); the patterns below are the fallback, text, for them.
_APPEND_EXISTING = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
_DELETE_MISSING = re.compile(r"Could not delete from config\. '([^']+)' does not exist")
_DELETE_OTHER_VALUE = re.compile(
    r"Could not delete from config\. The value of '([^']+)' is .* and not (.*)\.$", re.MULTILINE
)
_DELETE_DEFAULT = re.compile(r"Could not delete '([^']+)'\. No match in the defaults list")
_NEEDS_MULTIRUN = re.compile(
    r"Ambiguous value for argument '(?P<a>[^']+)'|Sweep parameters '(?P<b>[^']+)' requires"
)
_OVERRIDE_DEFAULT = re.compile(r"Could not override '([^']+)'\.")
_IN_CONFIG = re.compile(r"^In '([^']+)': ")


def _describe_composition(
    exc: ConfigCompositionException, config_path: str | None
) -> ConfigErrorInfo:
    text = str(exc)
    common = {"message": _first(text), "config_path": config_path, "error": exc}
    if match := _APPEND_EXISTING.search(text):
        return ConfigErrorInfo("append_existing", key=match.group(1), **common)
    if match := _DELETE_MISSING.search(text):
        return ConfigErrorInfo("delete_missing", key=match.group(1), **common)
    if match := _DELETE_OTHER_VALUE.search(text):
        return ConfigErrorInfo("delete_missing", key=match.group(1), value=match[2], **common)
    if match := _DELETE_DEFAULT.search(text):  # ~group[=option]: no such entry in the defaults
        key, _, value = match.group(1).partition("=")
        return ConfigErrorInfo("delete_missing", key=key, value=value or None, **common)
    if match := _NEEDS_MULTIRUN.search(text):
        override = match["a"] or match["b"]
        key = override.lstrip("+~").split("=", 1)[0]
        return ConfigErrorInfo("needs_multirun", key=key, override=override, **common)
    if match := _OVERRIDE_DEFAULT.search(text):  # group=option for a group not in the defaults
        return ConfigErrorInfo("other", key=match.group(1), **common)
    return ConfigErrorInfo("other", **common)


def _config_path(exc: BaseException) -> str | None:
    # Fallback, text: Hydra names the config file an error arose in only in its message
    # ("In 'optimizer/adam': ValidationError raised while composing config: ...").
    if isinstance(exc, HydraException):
        match = _IN_CONFIG.match(str(exc))
        return match.group(1) if match else None
    return None


def _first(text: Any) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""

"""Hydra's and OmegaConf's composition errors as one readable line naming the override."""

from __future__ import annotations

import enum
from typing import Any

import yaml
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from dlexp.compat.hydra import describe_config_error
from dlexp.errors import PATH_ERRNOS, DlexpError, path_error, shorten

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_words(expected: Any) -> str:
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return "one of: " + ", ".join(expected.__members__)
    return _TYPE_WORDS.get(expected, getattr(expected, "__name__", "of another type"))


def explain(exc: BaseException, overrides: list[str]) -> str:
    """One readable line for a composition error, naming the override it comes from."""
    if isinstance(exc, DlexpError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in PATH_ERRNOS:
        return path_error(exc, overrides)
    info = describe_config_error(exc)
    given = shorten((_override_for(info.key, overrides) if info.key else None) or info.key or "")
    if info.kind == "missing_option":
        wanted = shorten(_override_for(info.key, overrides) or f"{info.key}={info.value}")
        options = ", ".join(o for o in info.options if not o.startswith("_"))
        return f"{wanted}: no such option in group '{info.key}'; available: {options}"
    if info.kind == "unknown_key":
        known = ", ".join(k for k in info.known_keys if not k.startswith("_") and k != "hydra")
        return f"{given}: unknown key '{info.key}'" + (f"; keys there: {known}" if known else "")
    if info.kind == "wrong_type" and info.expected_type is not None:
        return f"{given}: {info.key} must be {_type_words(info.expected_type)}"
    if info.kind == "needs_multirun":
        return f"{info.override}: add -m/--multirun to sweep, or write key=[a,b] for a list"
    if info.kind == "append_existing":
        return f"+{info.key}: the key exists already; drop the '+'"
    if info.kind == "parse":
        return f"{info.override}: cannot parse this override ({info.message})"
    if isinstance(exc, MissingMandatoryValue) and info.key:
        return f"{info.key}=???: is required but was not set"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return (
            f"{mark.name}: malformed YAML at line {mark.line + 1}, column {mark.column + 1}: "
            f"{exc.problem or exc.context}"
        )
    if isinstance(exc, (OSError, ValueError)) and "yaml" in str(exc).lower():
        return f"malformed YAML: {first_line(str(exc))}"
    if isinstance(info.error, OmegaConfBaseException) and info.key:
        return f"{given}: {info.message}"
    return info.message


def _override_for(key: str, overrides: list[str]) -> str | None:
    key = key.split("[", 1)[0]  # list items: model.hidden_sizes[1] -> model.hidden_sizes
    for o in overrides:
        name = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if name == key:
            return o
    return None


def first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""

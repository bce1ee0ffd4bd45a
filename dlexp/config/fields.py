"""Typed config fields with declared constraints, and the validator that checks them.

Every config group's schema (``dlexp/config/<group>.py``) declares its fields with
:func:`param`. :func:`validate` walks a typed :class:`~dlexp.config.Config` (nested
dataclass instances), checks every declared constraint and calls each schema's optional
``check(key)`` hook for rules that span several fields. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from dlexp.errors import ConfigError

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    *,
    factory: Any = _MISSING,
    choices: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    each: bool = False,
) -> Any:
    """A dataclass field with constraints checked by :func:`validate`.

    ``each=True`` applies the numeric bounds / choices to every item of a list value.
    """
    meta = {
        k: v for k, v in dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt).items() if v is not None
    }
    meta["each"] = each
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe_bounds(meta: dict[str, Any]) -> str:
    """Human text for a field's allowed values, e.g. ``'a number in [0, 1)'``."""
    if "choices" in meta:
        return "one of: " + ", ".join(str(c) for c in meta["choices"])
    lo = f"[{meta['ge']}" if "ge" in meta else f"({meta['gt']}" if "gt" in meta else "(-inf"
    hi = f"{meta['le']}]" if "le" in meta else f"{meta['lt']})" if "lt" in meta else "inf)"
    if "ge" in meta and "le" not in meta and "lt" not in meta:
        return f">= {meta['ge']}"
    if "gt" in meta and "le" not in meta and "lt" not in meta:
        return f"> {meta['gt']}"
    return f"a number in {lo}, {hi}"


def _in_bounds(value: Any, meta: dict[str, Any]) -> bool:
    if "choices" in meta:
        return value in meta["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True  # type checks belong to OmegaConf; None means "not set"
    if isinstance(value, float) and not math.isfinite(value):
        return False  # nan and ±inf are never a meaningful setting
    return not (
        ("ge" in meta and value < meta["ge"])
        or ("gt" in meta and value <= meta["gt"])
        or ("le" in meta and value > meta["le"])
        or ("lt" in meta and value >= meta["lt"])
    )


# Integers without a declared upper bound stay within a C int: beyond it torch and the data
# loaders overflow (or a run of 10**40 epochs starts).
INT_LIMIT = 2**31


def check_value(key: str, value: Any, meta: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` if ``value`` breaks the constraints in ``meta``."""
    if "le" not in meta and "lt" not in meta and "choices" not in meta:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= INT_LIMIT:
                bounds = {"gt": -INT_LIMIT, **meta, "lt": INT_LIMIT}
                raise ConfigError(key, value, f"must be {describe_bounds(bounds)}")
    if value is None or not any(k in meta for k in ("choices", "ge", "gt", "le", "lt")):
        return
    items = list(value) if meta.get("each") and isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not _in_bounds(item, meta):
            raise ConfigError(key, value, f"must be {describe_bounds(meta)}")


def validate(node: Any, prefix: str = "") -> None:
    """Check every declared constraint and ``check`` hook below ``node`` (a dataclass
    instance); raise :class:`ConfigError` naming the full key."""
    if isinstance(node, dict):  # open groups (callbacks): their documented entries are typed
        for key, value in node.items():
            validate(value, f"{prefix}{key}.")
        return
    if not dataclasses.is_dataclass(node):
        return
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        check_value(prefix + f.name, value, dict(f.metadata))
        validate(value, f"{prefix}{f.name}.")
    if hasattr(node, "check"):
        node.check(prefix.rstrip("."))

"""A backbone's stages by name and index: what ``transfer.freeze_until`` refers to.

Lightning-free, so that the up-front check can resolve stage names on a model built on
the meta device.
"""

from __future__ import annotations

from torch import nn

from dlexp.errors import ConfigError


def stages(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's stages: its top-level children (or the backbone itself if it has none)."""
    children = list(backbone.named_children())
    return children or [("backbone", backbone)]


def stage_index(named: list[tuple[str, nn.Module]], until: int | str) -> int:
    """The index of stage ``until``: a module name, or an index (negative counts from the end)."""
    names = [name for name, _ in named]
    if isinstance(until, str) and until in names:
        return names.index(until)
    if isinstance(until, int) and -len(named) <= until < len(named):
        return until % len(named)
    listing = ", ".join(f"{i}={name}" if name != str(i) else name for i, name in enumerate(names))
    raise ConfigError(
        "transfer.freeze_until", until, f"must name a backbone stage (index or name): {listing}"
    )


def check_freeze_until(model: nn.Module, until: int | str) -> None:
    """Raise :class:`ConfigError` unless ``until`` names a stage of ``model.backbone``."""
    stage_index(stages(model.backbone), until)

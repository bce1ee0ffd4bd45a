"""A backbone's stages and ``transfer.freeze_until``: which of them a policy freezes.

Torch only, no Lightning: the up-front config check resolves ``freeze_until`` against a
model built on the meta device (:func:`check_freeze_until`) with the same code, and the same
errors, as the training run.
"""

from __future__ import annotations

from torch import nn

from dlexp.errors import ConfigError

KEY = "transfer.freeze_until"


def stages(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's stages: its top-level children (or the backbone itself if it has none)."""
    children = list(backbone.named_children())
    return children or [("backbone", backbone)]


def has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _listing(named: list[tuple[str, nn.Module]]) -> str:
    names = [name for name, _ in named]
    return ", ".join(f"{i}={name}" if name != str(i) else name for i, name in enumerate(names))


def stage_index(named: list[tuple[str, nn.Module]], until: int | str) -> int:
    """The index of stage ``until``: a module name, or an index (negative counts from the end)."""
    names = [name for name, _ in named]
    if isinstance(until, str) and until in names:
        return names.index(until)
    if isinstance(until, int) and not isinstance(until, bool) and -len(named) <= until < len(named):
        return until % len(named)
    raise ConfigError(KEY, until, f"must name a backbone stage (index or name): {_listing(named)}")


def default_freeze_until(named: list[tuple[str, nn.Module]]) -> int:
    """``freeze_until: null``: the stage before the last one that has parameters.

    So every stage trains from the last one with parameters on (LeNet-5: ``fc2``; ResNet-18:
    ``layer4`` and the parameter-free ``pool`` and ``flatten`` after it); the others are frozen.
    """
    with_params = [i for i, (_, module) in enumerate(named) if has_parameters(module)]
    if len(with_params) < 2:
        raise ConfigError(
            KEY,
            None,
            "the default (all but the last backbone stage with parameters) freezes no "
            f"parameters: the backbone has {len(with_params)} stage(s) with parameters "
            f"({_listing(named)}); name a stage, or use transfer=linear_probe or finetune",
        )
    return with_params[-1] - 1


def freeze_until_index(named: list[tuple[str, nn.Module]], until: int | str | None) -> int:
    """The index of the last frozen stage for ``transfer.freeze_until`` (None: the default)."""
    return default_freeze_until(named) if until is None else stage_index(named, until)


def frozen_stages_until(
    backbone: nn.Module, until: int | str | None
) -> list[tuple[str, nn.Module]]:
    """The stages ``freeze_stages`` freezes: the first ones, up to and including ``until``."""
    named = stages(backbone)
    return named[: freeze_until_index(named, until) + 1]


def check_freeze_until(model: nn.Module, freeze_until: int | str | None) -> None:
    """Raise the :class:`ConfigError` that training would raise for ``freeze_until``.

    ``model`` is a :class:`~dlexp.models.Classifier` (its ``backbone`` is used), or a backbone;
    it may live on the meta device: only its structure is read.
    """
    backbone = getattr(model, "backbone", model)
    freeze_until_index(stages(backbone), freeze_until)

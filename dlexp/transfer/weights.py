"""Fitting a source's weights to a freshly built model: head, input channels, mismatches.

The source's tensors are keyed like the target :class:`~dlexp.models.Classifier`'s
``state_dict`` (``backbone.…``, ``head.…``). Everything must match by name and shape except:

* the head (``head.*``), which is replaced by the model's freshly initialized one when the
  class count differs (``transfer.head=auto``), always (``new``) or never (``keep``);
* the first convolution's input channels (1 <-> 3), adapted by :func:`adapt_channels`;
* BatchNorm's ``num_batches_tracked`` counters, which a source may lack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dlexp.checkpoints import mismatch_error
from dlexp.errors import InputError

HEAD_PREFIX = "head."


@dataclass
class LoadReport:
    """What a transfer loaded into the model (recorded in ``metrics.json``)."""

    source: str
    loaded: int = 0
    head: str = "loaded"
    adapted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "tensors_loaded": self.loaded,
            "head": self.head,
            "channels_adapted": self.adapted,
        }


def adapt_channels(weight: torch.Tensor, channels: int, mode: str) -> torch.Tensor:
    """A conv kernel ``(out, c_src, kh, kw)`` turned into ``(out, channels, kh, kw)``.

    With ``S = sum_c W[:, c]`` every new input channel gets the same kernel:
    ``sum``: ``W'[:, j] = S / channels`` (the sum over input channels is kept: a gray image
    copied into every channel gives the same response); ``mean``: ``W'[:, j] = S / c_src``
    (the mean over input channels is kept). So 3 -> 1 gives ``S`` (sum) or ``S / 3`` (mean),
    and 1 -> 3 gives ``W / 3`` (sum) or a copy of ``W`` in each channel (mean).
    """
    total = weight.sum(dim=1, keepdim=True)
    denom = channels if mode == "sum" else weight.shape[1]
    return (total / denom).expand(-1, channels, *weight.shape[2:]).clone()


def first_conv_key(state: dict[str, torch.Tensor]) -> str | None:
    """The weight of the model's first convolution (the first 4-d floating tensor)."""
    return next(
        (
            k
            for k, v in state.items()
            if v.ndim == 4 and v.is_floating_point() and k.endswith("weight")
        ),
        None,
    )


def fit_weights(
    model: nn.Module,
    source: dict[str, torch.Tensor],
    *,
    key: str,
    shown: str,
    head: str = "auto",
    channel_adapt: str = "sum",
    origin: dict[str, str] | None = None,
) -> LoadReport:
    """Load ``source`` into ``model`` under the rules above; raise :class:`InputError` on misfit.

    ``key``/``shown`` name the argument and the source in messages; ``origin`` maps a model
    key to the source's own name for it (torchvision weights mapped by position).
    """
    target = model.state_dict()
    origin = origin or {}
    head_fits = _same_entries(target, source, HEAD_PREFIX)
    if head == "keep" and not head_fits:
        raise InputError(
            f"{key}={shown}: the source's head does not fit the model's "
            f"({_head_shape(source)} vs {_head_shape(target)}); use transfer.head=auto or new"
        )
    new_head = head == "new" or not head_fits
    first_conv = first_conv_key(target)
    report = LoadReport(shown, head="new" if new_head else "loaded")
    fitted: dict[str, torch.Tensor] = {}
    misfits: list[str] = []
    for name, value in target.items():
        if new_head and name.startswith(HEAD_PREFIX):
            continue
        if name not in source:
            if not name.endswith("num_batches_tracked"):
                misfits.append(f"{name} (missing in the source)")
            continue
        tensor = source[name]
        if tensor.shape != value.shape:
            if name == first_conv and _channels_differ_only(tensor, value):
                tensor = adapt_channels(tensor.float(), value.shape[1], channel_adapt)
                channels = f"{source[name].shape[1]} -> {value.shape[1]} channels"
                report.adapted.append(f"{name}: {channels} ({channel_adapt})")
            else:
                was = f"{origin[name]} " if name in origin else ""
                misfits.append(
                    f"{name} (source {was}{list(tensor.shape)}, model {list(value.shape)})"
                )
                continue
        fitted[name] = tensor.to(value.dtype)
    misfits += [
        f"{name} (not in the model)"
        for name in source
        if name not in target and not (new_head and name.startswith(HEAD_PREFIX))
    ]
    if misfits:
        raise mismatch_error(key, shown, "the source does not fit the model", misfits)
    model.load_state_dict(fitted, strict=False)
    report.loaded = len(fitted)
    return report


def _same_entries(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
    sa = {k: tuple(v.shape) for k, v in a.items() if k.startswith(prefix)}
    sb = {k: tuple(v.shape) for k, v in b.items() if k.startswith(prefix)}
    return sa == sb


def _head_shape(state: dict[str, torch.Tensor]) -> str:
    shapes = [list(v.shape) for k, v in state.items() if k.startswith(HEAD_PREFIX) and v.ndim == 2]
    return f"final layer {shapes[-1]}" if shapes else "no head"


def _channels_differ_only(src: torch.Tensor, dst: torch.Tensor) -> bool:
    return src.ndim == 4 and src.shape[0] == dst.shape[0] and src.shape[2:] == dst.shape[2:]

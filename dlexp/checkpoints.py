"""Finding and safely reading checkpoints of dlexp runs (used by transfer, eval and predict).

Every load goes through :func:`safe_load`: ``torch.load(..., weights_only=True)``, which
unpickles only tensors and plain data. A file whose pickle would import and call anything
else (``os.system``, a class's ``__reduce__`` …) is refused with one line, never executed.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from dlexp.config.model_base import ModelConfig
from dlexp.errors import InputError

MODEL_PREFIX = "model."


def safe_load(path: str | Path, key: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; bad files raise :class:`InputError`.

    ``key`` names the argument the path came from (``ckpt``, ``transfer.source``) in errors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{key}={path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes from the weights-only loader
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        unsafe = re.search(r"unsupported GLOBAL ([\w.]+)", text)
        if unsafe:
            raise InputError(
                f"{key}={path}: refused: unpickling it would call {unsafe.group(1)}; dlexp loads "
                "only tensors and plain data (torch.load weights_only=True)"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        why = reason.group(1).strip() if reason else "corrupt or not a PyTorch file"
        raise InputError(
            f"{key}={path}: refused: not a checkpoint of tensors and plain data ({why}); dlexp "
            "loads with torch.load weights_only=True"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". ")[0]  # torch appends paragraphs of advice to the first sentence
        raise InputError(
            f"{key}={path}: not a readable checkpoint, truncated or corrupt ({first})"
        ) from None


def lightning_state_dict(checkpoint: Any, path: Path, key: str) -> dict[str, torch.Tensor]:
    """The LightningModule ``state_dict`` inside a loaded Lightning checkpoint."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{key}={path}: not a Lightning checkpoint (no tensor 'state_dict' in it)")
    return state


def model_state_dict(loaded: Any, path: Path, key: str) -> dict[str, torch.Tensor]:
    """The model's weights (keys as in the :class:`~dlexp.models.Classifier`) from a loaded file.

    Accepts a Lightning checkpoint of a dlexp run (``model.*`` entries of its ``state_dict``;
    the input normalizer is left out) or a plain state dict of tensors.
    """
    if isinstance(loaded, dict) and "state_dict" in loaded:
        state = lightning_state_dict(loaded, path, key)
    elif (
        isinstance(loaded, dict)
        and loaded
        and all(isinstance(v, torch.Tensor) for v in loaded.values())
    ):
        state = loaded
    else:
        raise InputError(f"{key}={path}: holds neither a Lightning checkpoint nor a state dict")
    if any(k.startswith(MODEL_PREFIX) for k in state):
        state = {k[len(MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
    return state


SHOWN_MISMATCHES = 5


def mismatch_error(key: str, shown: str, what: str, misfits: list[str]) -> InputError:
    """One line listing the first mismatching keys and their count."""
    more = len(misfits) - SHOWN_MISMATCHES
    listed = "; ".join(misfits[:SHOWN_MISMATCHES]) + (f"; … (+{more} more)" if more > 0 else "")
    return InputError(f"{key}={shown}: {what}: {len(misfits)} mismatching keys: {listed}")


def load_exact(
    module: torch.nn.Module, state: dict[str, torch.Tensor], key: str, shown: str
) -> None:
    """Load ``state`` into ``module``: every key and shape must match (else one clear line)."""
    target = module.state_dict()
    misfits = [f"{k} (missing in the checkpoint)" for k in target if k not in state]
    misfits += [
        f"{k} (checkpoint {list(v.shape)}, model {list(target[k].shape)})"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    misfits += [f"{k} (not in the model)" for k in state if k not in target]
    if misfits:
        raise mismatch_error(key, shown, "the checkpoint does not fit the model", misfits)
    module.load_state_dict(state)


def restore_module(
    model_cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    key: str,
    shown: str,
    tta=None,
):
    """The run's LightningModule rebuilt from its model config and loaded with ``state``.

    The input normalizer's statistics come from the checkpoint (the preprocessing the model
    was trained with), not from any data at hand. ``tta``: the test's test-time augmentation
    (:func:`dlexp.tta.build_tta`).
    """
    from dlexp.data.normalize import InputNormalizer
    from dlexp.models import build_model
    from dlexp.module import ClassificationModule

    model = build_model(
        model_cfg, in_channels=in_channels, num_classes=num_classes, image_size=image_size
    )
    normalizer = InputNormalizer("checkpoint", torch.zeros(in_channels), torch.ones(in_channels))
    module = ClassificationModule(model, normalizer, num_classes, optimizer=None, tta=tta)
    load_exact(module, state, key, shown)
    return module.eval()


def restore_for_test(cfg, state: dict[str, torch.Tensor], *, key: str, shown: str, tta=None):
    """``(datamodule, module)``: the test data of the run's config ``cfg`` (set up) and the
    run's LightningModule restored from ``state`` for it (see :func:`restore_module`)."""
    from dlexp.data import build_datamodule

    datamodule = build_datamodule(cfg.data, seed=cfg.seed)
    datamodule.setup("test")
    module = restore_module(
        cfg.model,
        state,
        in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes,
        image_size=datamodule.image_size,
        key=key,
        shown=shown,
        tta=tta,
    )
    return datamodule, module

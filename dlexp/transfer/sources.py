"""Transfer sources: a dlexp run, a checkpoint file, or torchvision's pretrained weights.

Each source becomes a state dict keyed like the model's, then :func:`~dlexp.transfer.weights.
fit_weights` loads it. Every file is read by :func:`dlexp.checkpoints.safe_load`
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from dlexp.checkpoints import (
    model_state_dict,
    safe_load,
)
from dlexp.config.model import MODEL_SCHEMAS
from dlexp.config.model_base import ModelConfig
from dlexp.config.transfer import TORCHVISION_PREFIX, PretrainedConfig, is_torchvision
from dlexp.errors import ConfigError, InputError
from dlexp.run_config import read_saved, resolve_checkpoint, run_dir_of
from dlexp.transfer.weights import LoadReport, fit_weights

KEY = "transfer.source"
# Training-only auxiliary classifiers that torchvision drops after loading the weights.
AUX_MODULES = ("aux1.", "aux2.", "AuxLogits.")


def load_source(cfg: PretrainedConfig, model: nn.Module, model_cfg: ModelConfig) -> LoadReport:
    """Load ``cfg.source`` into ``model``, built from ``model_cfg`` (the ``model`` node)."""
    hint = ""
    if is_torchvision(cfg.source):
        state, origin, shown = torchvision_state(cfg.source, model, model_cfg, cfg.download)
    else:
        path = resolve_checkpoint(cfg.source, KEY)
        state, origin, shown = model_state_dict(safe_load(path, KEY), path, KEY), {}, str(path)
        hint = _source_model_hint(path, model_cfg)
    try:
        return fit_weights(
            model,
            state,
            key=KEY,
            shown=shown,
            head=cfg.head,
            channel_adapt=cfg.channel_adapt,
            origin=origin,
        )
    except InputError as exc:
        raise InputError(f"{exc}{hint}") from None


def _source_model_hint(path: Path, model_cfg: ModelConfig) -> str:
    """How the source run's model config differs from this one (a different model: an error)."""
    run_dir = run_dir_of(path)
    if run_dir is None:
        return ""
    theirs = OmegaConf.to_container(read_saved(run_dir).get("model") or {}, resolve=True)
    ours = dataclasses.asdict(model_cfg)
    if theirs.get("name") and theirs["name"] != ours.get("name"):
        raise InputError(
            f"{KEY}={path}: the source run trained model={theirs['name']}, this run builds "
            f"model={ours.get('name')}; transfer needs the same architecture"
        )
    differ = [f"model.{k}={v}" for k, v in theirs.items() if k in ours and ours[k] != v]
    return f" (the source run had {', '.join(differ)})" if differ else ""


def torchvision_weights_file(arch: str, weights_name: str) -> tuple[Path, str]:
    """The torch hub cache path of torchvision's ``<arch>`` weights ``weights_name`` and its URL."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    try:
        weights = enum[weights_name]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ConfigError(
            KEY, TORCHVISION_PREFIX + weights_name, f"torchvision {arch} weights are: {names}"
        ) from None
    filename = weights.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename, weights.url


def torchvision_arch(source: str, model_cfg: ModelConfig) -> str:
    """The torchvision architecture whose weights fit ``model_cfg`` (``vgg11_bn`` for
    ``model=vgg11 model.norm=batch``); refused for a model without one."""
    arch = model_cfg.torchvision_arch_for()
    if not arch:
        with_arch = sorted(n for n, s in MODEL_SCHEMAS.items() if s.torchvision_arch)
        raise ConfigError(
            KEY,
            source,
            f"model {model_cfg.name} has no torchvision counterpart; torchvision weights "
            f"fit: {', '.join(with_arch)}",
        )
    return arch


def torchvision_state(
    source: str, model: nn.Module, model_cfg: ModelConfig, download: bool
) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """torchvision's weights renamed to the model's keys by position (shapes checked later).

    The zoo builds torchvision-based models so that their ``state_dict`` lists the same
    entries in the same order as torchvision's; ``num_batches_tracked`` counters (absent
    from some weight files) and auxiliary classifiers are left out of the pairing.
    """
    arch = torchvision_arch(source, model_cfg)
    model_name = model_cfg.name
    path, url = torchvision_weights_file(arch, source[len(TORCHVISION_PREFIX) :])
    if not path.is_file():
        _fetch(url, path, download)
    loaded = safe_load(path, KEY)
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise InputError(f"{KEY}={source}: {path} is not a torchvision state dict")
    theirs = [(k, v) for k, v in loaded.items() if _paired(k)]
    ours = [k for k in model.state_dict() if _paired(k)]
    if len(theirs) != len(ours):
        raise InputError(
            f"{KEY}={source}: torchvision {arch} has {len(theirs)} tensors, model {model_name} "
            f"has {len(ours)}; the weights fit only the torchvision layout of the model"
        )
    state = {mine: tensor for mine, (_, tensor) in zip(ours, theirs, strict=True)}
    origin = {mine: name for mine, (name, _) in zip(ours, theirs, strict=True)}
    return state, origin, f"{source} ({path})"


def _paired(key: str) -> bool:
    return not key.endswith("num_batches_tracked") and not key.startswith(AUX_MODULES)


def _fetch(url: str, path: Path, download: bool) -> None:
    where = f"download {url} and save it as {path}"
    if not download:
        raise InputError(f"{KEY}: {path} not found and transfer.download=false; {where}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:  # offline, proxy, unwritable cache …
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"{KEY}: {path} not found and the download failed ({reason}); {where}"
        ) from None

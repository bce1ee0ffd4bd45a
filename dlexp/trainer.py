"""The Lightning Trainer (``conf/trainer/*.yaml``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from dlexp.distributed import FREE_GPU, claim_free_gpu, strategy_for
from dlexp.errors import ConfigError, InputError
from dlexp.guards import AtomicCheckpointIO
from dlexp.schema import param

PRECISIONS = (
    "32",
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "64",
    "64-true",
    "16-true",
    "bf16-true",
)


@dataclass
class TrainerConfig:
    """Arguments of :class:`pytorch_lightning.Trainer` that dlexp exposes.

    ``strategy: ddp`` runs one job in several processes (see :mod:`dlexp.distributed`).
    ``devices: free`` takes one GPU that no other dlexp process holds (parallel sweeps).
    ``benchmark`` is cuDNN's autotuner (null: on unless ``deterministic``; dlexp's image
    shapes are fixed, so it only helps); ``true`` contradicts ``deterministic: true``.
    """

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: Any = "auto"
    sync_batchnorm: bool = False
    num_nodes: int = param(1, ge=1)
    precision: str = param("32-true", choices=PRECISIONS)
    max_epochs: int = param(15, ge=1)
    min_epochs: int | None = param(None, ge=1)
    max_time: str | None = None
    deterministic: bool = False
    benchmark: bool | None = None
    gradient_clip_val: float | None = param(None, ge=0)
    gradient_clip_algorithm: str = param("norm", choices=("norm", "value"))
    accumulate_grad_batches: int = param(1, ge=1)
    check_val_every_n_epoch: int = param(1, ge=1)
    log_every_n_steps: int = param(10, ge=1)
    limit_train_batches: float | None = param(None, gt=0)
    limit_val_batches: float | None = param(None, ge=0)
    limit_test_batches: float | None = param(None, gt=0)
    num_sanity_val_steps: int = param(2, ge=-1)
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    fast_dev_run: bool = False

    def check(self, key: str) -> None:
        if not _valid_devices(self.devices):
            raise ConfigError(
                f"{key}.devices",
                self.devices,
                f"must be auto, {FREE_GPU}, a count >= 1, -1 (all), or a list of device indices",
            )
        if self.deterministic and self.benchmark:
            raise ConfigError(
                f"{key}.benchmark",
                True,
                f"must be false or null with {key}.deterministic=true "
                "(cuDNN autotuning picks non-deterministic kernels)",
            )
        if self.accelerator == "cpu" and self.precision in ("16-mixed", "16-true"):
            raise ConfigError(
                f"{key}.precision",
                self.precision,
                "must not be float16 on the CPU (use bf16-mixed, or a GPU accelerator)",
            )


def _valid_devices(devices: Any) -> bool:
    """Lightning's forms ("auto", a count, -1 = all, indices as a list or "0,1"), or "free"."""
    if devices in ("auto", FREE_GPU):
        return True
    if isinstance(devices, str):
        try:
            devices = [int(d) for d in devices.split(",") if d.strip()]
        except ValueError:
            return False
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, list | tuple):
        return bool(devices) and all(isinstance(d, int) and d >= 0 for d in devices)
    return False


class _DropAdvertisements(logging.Filter):
    """Drops Lightning's "Tip: try installing <service>" messages from the console and log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdvertisements())


def build_trainer(
    cfg: DictConfig,
    *,
    callbacks: list[pl.Callback],
    loggers: list,
    run_dir: Path,
    resume: Path | None = None,
) -> pl.Trainer:
    """A Trainer from the ``trainer`` node; unset (None) limits keep Lightning's defaults.

    ``resume`` is the checkpoint the run continues from (DDP workers are told about it).
    """
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if v is not None}
    kwargs["strategy"] = strategy_for(kwargs.get("strategy", "auto"), run_dir, resume)
    kwargs.setdefault("benchmark", not kwargs.get("deterministic", False))
    if kwargs.get("devices") == FREE_GPU:
        kwargs["devices"] = claim_free_gpu()
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        if key in kwargs and float(kwargs[key]).is_integer() and kwargs[key] > 1:
            kwargs[key] = int(kwargs[key])  # a whole number > 1 is a batch count
    try:
        return pl.Trainer(
            **kwargs,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],
        )
    except (MisconfigurationException, ImportError, TypeError, ValueError) as exc:  # no GPU…
        raise InputError(f"trainer: {' '.join(str(exc).split())}") from None

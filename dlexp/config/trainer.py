"""The ``trainer`` group's schema (``dlexp/conf/trainer/*.yaml``): Lightning Trainer arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlexp.config.fields import param
from dlexp.errors import ConfigError

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "64", "64-true", "16-true", "bf16-true")
FLOAT16 = ("16-mixed", "16-true")
FREE_GPU = "free"  # trainer.devices=free: a GPU no other dlexp process on this machine holds
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass
class TrainerConfig:
    """Arguments of :class:`pytorch_lightning.Trainer` that dlexp exposes.

    ``strategy: ddp`` runs one job in several processes (see :mod:`dlexp.distributed`).
    ``devices: free`` takes one GPU that no other dlexp process holds (parallel sweeps).
    ``benchmark`` is cuDNN's autotuner (null: on unless ``deterministic``; dlexp's image
    shapes are fixed, so it only helps); ``true`` contradicts ``deterministic: true``.
    ``limit_*_batches`` follow Lightning: an integer is a number of batches, a float in
    (0, 1] a fraction of them (``1`` is one batch, ``1.0`` all of them).
    """

    accelerator: str = param("auto", choices=ACCELERATORS)
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
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
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
        for name, zero_ok in (
            ("limit_train_batches", False),
            ("limit_val_batches", True),
            ("limit_test_batches", False),
        ):
            _check_limit(f"{key}.{name}", getattr(self, name), zero_ok)
        if self.deterministic and self.benchmark:
            raise ConfigError(
                f"{key}.benchmark",
                True,
                f"must be false or null with {key}.deterministic=true "
                "(cuDNN autotuning picks non-deterministic kernels)",
            )
        if self.accelerator == "cpu":
            self.check_precision("cpu", key)

    def check_precision(self, accelerator: str, key: str = "trainer") -> None:
        """Refuse a precision that ``accelerator`` (resolved: cpu, gpu, mps) cannot run."""
        if accelerator == "cpu" and self.precision in FLOAT16:
            shown = "" if self.accelerator == "cpu" else f" ({key}.accelerator=auto found no GPU)"
            raise ConfigError(
                f"{key}.precision",
                self.precision,
                f"must not be float16 on the CPU{shown}: use bf16-mixed, 32-true, or a GPU",
            )


def _check_limit(key: str, value: Any, zero_ok: bool) -> None:
    if value is None:
        return
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    elif isinstance(value, int):
        ok = value >= low
    else:
        ok = (value >= 0 if zero_ok else value > 0) and value <= 1
    if not ok:
        raise ConfigError(
            key,
            value,
            f"must be a number of batches (an integer >= {low}) or a fraction "
            f"{'[0' if zero_ok else '(0'}, 1.0] of them",
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

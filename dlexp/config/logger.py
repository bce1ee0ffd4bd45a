"""The ``logger`` group (``dlexp/conf/logger/*.yaml``): where a run's metrics go besides
``metrics.json`` and ``epochs.csv``.

The group is a set of entries, one per logger (``logger=[tensorboard,mlflow]`` picks
several); each documented entry has its schema here and builds Lightning's logger in
:meth:`build`. MLflow and W&B are optional extras: a missing package is bad input, found
before anything runs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlexp.config.fields import param
from dlexp.errors import InputError

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger


def require_extra(key: str, package: str, extra: str) -> None:
    """Refuse ``key`` when ``package`` (of dlexp's ``extra``) is not installed."""
    if importlib.util.find_spec(package) is None:
        raise InputError(
            f"{key}: needs the {package} package, which is not installed "
            f"(install it with: pip install 'dlexp[{extra}]')"
        )


@dataclass
class TensorBoardConfig:
    """``logger.tensorboard``: event files in ``<run dir>/tensorboard`` (scalars, the first
    training batch, the confusion matrix, and the HParams dashboard's row at the end)."""

    def build(self, run_dir: Path, resume_step: int | None = None) -> Logger:
        """Resumed at ``resume_step``: the events the interrupted attempt wrote from that step
        on are purged, so no step appears twice."""
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(
            str(run_dir), "tensorboard", version="", default_hp_metric=False,
            purge_step=resume_step,
        )  # fmt: skip


@dataclass
class CSVConfig:
    """``logger.csv``: Lightning's ``metrics.csv`` in ``<run dir>/csv``."""

    def build(self, run_dir: Path, resume_step: int | None = None) -> Logger:
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(str(run_dir), "csv", version="")


@dataclass
class MLflowConfig:
    """``logger.mlflow``: an MLflow run per job (params: the flattened config; metrics per
    epoch and the final test; artifacts: ``metrics.json`` and the best checkpoint). The jobs
    of a multirun are child runs of one parent run named after the sweep."""

    # a folder: the local store (the SQLite database mlflow.db and artifacts/), relative to
    # the working directory; or a tracking server's URI (http://host:5000, databricks, ...)
    tracking_uri: str = "outputs/mlflow"
    experiment_name: str = "dlexp"
    run_name: str | None = None  # None: the run dir's name (a sweep's job: <sweep>/<job>)
    tags: dict[str, str] = field(default_factory=dict)
    log_checkpoint: bool = True  # the best checkpoint as an artifact (false: metrics.json only)

    def check(self, key: str) -> None:
        require_extra(key, "mlflow", "mlflow")

    def local_store(self) -> Path | None:
        """The local store's folder (absolute: a launcher's job processes may start
        elsewhere), or None for a server."""
        if "://" in self.tracking_uri or self.tracking_uri == "databricks":
            return None
        return Path(self.tracking_uri).expanduser().resolve()

    def store_uri(self) -> str:
        """The tracking URI MLflow's client gets."""
        folder = self.local_store()
        return f"sqlite:///{folder / 'mlflow.db'}" if folder else self.tracking_uri

    def artifact_location(self) -> str | None:
        """Where a new experiment of the local store keeps its runs' artifacts."""
        folder = self.local_store()
        return (folder / "artifacts").as_uri() if folder else None

    def build(self, run_dir: Path, resume_step: int | None = None) -> Logger:
        from dlexp.tracking import mlflow_logger

        return mlflow_logger(self, run_dir, resume=resume_step is not None)


@dataclass
class WandbConfig:
    """``logger.wandb``: a Weights & Biases run per job, in ``<run dir>/wandb``; the jobs of
    a multirun form a group named after the sweep. ``offline`` (the default) logs to the
    run dir only (``wandb sync <run dir>/wandb/offline-run-*`` uploads it later);
    ``online`` needs ``wandb login``."""

    project: str = "dlexp"
    entity: str | None = None  # None: the account's default entity
    mode: str = param("offline", choices=("offline", "online", "disabled"))
    group: str | None = None  # None: a multirun's sweep id (a single run has no group)
    run_name: str | None = None  # None: the run dir's name (a sweep's job: <sweep>/<job>)
    tags: list[str] = field(default_factory=list)

    def check(self, key: str) -> None:
        require_extra(key, "wandb", "wandb")

    def build(self, run_dir: Path, resume_step: int | None = None) -> Logger:
        from dlexp.tracking import wandb_logger

        return wandb_logger(self, run_dir)


LOGGER_SCHEMAS: dict[str, type] = {
    "tensorboard": TensorBoardConfig,
    "csv": CSVConfig,
    "mlflow": MLflowConfig,
    "wandb": WandbConfig,
}


def documented(node: Any) -> bool:
    """Whether a typed ``logger`` entry is one of :data:`LOGGER_SCHEMAS` (others, added with
    ``+logger.<name>._target_=…``, are instantiated from their ``_target_``)."""
    return isinstance(node, tuple(LOGGER_SCHEMAS.values()))

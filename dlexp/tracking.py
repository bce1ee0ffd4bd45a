"""MLflow and W&B runs of dlexp's jobs: Lightning's MLFlowLogger and WandbLogger, told which
sweep a job belongs to, given its config, and handed its ending (``metrics.json``, the best
checkpoint, the status).

A multirun is one MLflow parent run with a child run per job, and one W&B group:
:class:`SweepTracking` (a Hydra callback) opens the parent run when the multirun starts and
puts the sweep in the environment, which the launcher's job processes inherit. Only global
rank 0 logs (Lightning's loggers log on rank 0; the calls here check it too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from dlexp.config.logger import MLflowConfig, WandbConfig

log = logging.getLogger(__name__)

SWEEP_ENV = "DLEXP_SWEEP_DIR"  # the running multirun's directory
MLFLOW_PARENT_ENV = "DLEXP_MLFLOW_PARENT_RUN"  # its MLflow parent run
RUN_DIR_TAG = "dlexp.run_dir"
SWEEP_DIR_TAG = "dlexp.sweep_dir"
# metrics.json's status -> the MLflow run's
MLFLOW_STATUS = {"completed": "FINISHED", "interrupted": "KILLED"}


def sweep_of(run_dir: Path) -> Path | None:
    """The directory of the multirun that ``run_dir`` is a job of (None: a single run)."""
    sweep = os.environ.get(SWEEP_ENV)
    if sweep and run_dir.resolve().parent == Path(sweep):
        return Path(sweep)
    return None


def job_name(run_dir: Path) -> str:
    """A run's name in a tracker: its directory's name; a sweep's job: ``<sweep>/<job>``."""
    sweep = sweep_of(run_dir)
    return f"{sweep.name}/{run_dir.name}" if sweep else run_dir.name


def _is_rank_zero() -> bool:
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0


# -- MLflow ------------------------------------------------------------------------------------


def mlflow_client(cfg: MLflowConfig):
    """MLflow's client of ``cfg``'s store (a local store's folder is created)."""
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # the database's creation, told line by line
        logging.getLogger(name).setLevel(logging.WARNING)
    if cfg.local_store() is not None:
        cfg.local_store().mkdir(parents=True, exist_ok=True)
    return MlflowClient(cfg.store_uri())


def experiment_of(client, cfg: MLflowConfig) -> str:
    """The id of ``cfg``'s experiment, created when missing."""
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(cfg.experiment_name, cfg.artifact_location())


def mlflow_logger(cfg: MLflowConfig, run_dir: Path, *, resume: bool = False):
    """Lightning's MLFlowLogger for the job in ``run_dir``: a child of the sweep's parent
    run in a multirun; a resumed run continues its own MLflow run."""
    from pytorch_lightning.loggers import MLFlowLogger

    if _is_rank_zero():
        experiment_of(mlflow_client(cfg), cfg)  # with the local store's artifact location
    tags = {**cfg.tags, RUN_DIR_TAG: str(run_dir.resolve())}
    if sweep_of(run_dir) and os.environ.get(MLFLOW_PARENT_ENV):
        tags["mlflow.parentRunId"] = os.environ[MLFLOW_PARENT_ENV]
    run_id = _run_tagged(cfg, RUN_DIR_TAG, tags[RUN_DIR_TAG]) if resume else None
    return MLFlowLogger(
        experiment_name=cfg.experiment_name,
        run_name=cfg.run_name or job_name(run_dir),
        tracking_uri=cfg.store_uri(),
        tags=tags,
        artifact_location=cfg.artifact_location(),
        run_id=run_id,
    )


def _run_tagged(cfg: MLflowConfig, tag: str, value: str) -> str | None:
    """The id of the newest run of ``cfg``'s experiment with ``tag`` = ``value`` (rank 0)."""
    if not _is_rank_zero():
        return None
    client = mlflow_client(cfg)
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is None:
        return None
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{tag}` = '{quoted}'", max_results=1,
        order_by=["attributes.start_time DESC"],
    )  # fmt: skip
    return runs[0].info.run_id if runs else None


def open_parent_run(cfg: MLflowConfig, sweep_dir: Path) -> str:
    """The MLflow run of the multirun in ``sweep_dir``: the one a previous attempt opened
    (``dlexp resume-sweep``), or a new one named after the sweep."""
    client = mlflow_client(cfg)
    found = _run_tagged(cfg, SWEEP_DIR_TAG, str(sweep_dir))
    if found:
        client.update_run(found, status="RUNNING")
        return found
    tags = {**cfg.tags, SWEEP_DIR_TAG: str(sweep_dir)}
    run = client.create_run(experiment_of(client, cfg), tags=tags, run_name=sweep_dir.name)
    return run.info.run_id


def _end_mlflow(logger, record: dict[str, Any], run_dir: Path, log_checkpoint: bool) -> None:
    client, run_id = logger.experiment, logger.run_id
    client.log_artifact(run_id, str(run_dir / "metrics.json"))
    best = record.get("best_checkpoint")
    if log_checkpoint and best and (run_dir / best).is_file():
        client.log_artifact(run_id, str(run_dir / best), "checkpoints")
    client.set_terminated(run_id, MLFLOW_STATUS.get(record.get("status"), "FAILED"))


# -- Weights & Biases --------------------------------------------------------------------------


def wandb_logger(cfg: WandbConfig, run_dir: Path):
    """Lightning's WandbLogger for the job in ``run_dir`` (files in ``<run dir>/wandb``);
    the jobs of a multirun share the sweep's name as their group."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    sweep = sweep_of(run_dir)
    return WandbLogger(
        name=cfg.run_name or job_name(run_dir),
        save_dir=str(run_dir),
        project=cfg.project,
        entity=cfg.entity,
        group=cfg.group or (sweep.name if sweep else None),
        tags=list(cfg.tags),
        mode=cfg.mode,
        job_type="train",
        # dlexp's console stays dlexp's; no git probing, no system-metrics thread
        settings=wandb.Settings(silent=True, console="off", disable_git=True, x_disable_stats=True),
    )


def _end_wandb(record: dict[str, Any]) -> None:
    """Finish the job's W&B run (the next job of a sweep in this process starts its own)."""
    import wandb

    if wandb.run is not None:
        wandb.run.summary["status"] = record.get("status")
        wandb.finish(exit_code=0 if record.get("status") == "completed" else 1)


# -- a job's ending, and a multirun's parent run -----------------------------------------------


@contextmanager
def tracked(loggers: list, configs: dict[str, Any], record, run_dir: Path) -> Iterator[None]:
    """Hand the job's ending, however it ends, to its MLflow and W&B runs: ``metrics.json``
    and the best checkpoint as MLflow artifacts and the status; W&B's run finished. A
    tracker that fails here is a warning: the run's own record is written already."""
    try:
        yield
    finally:
        if record.writes:
            for logger in loggers:
                try:
                    _end_run(logger, configs, record.data, run_dir)
                except Exception as exc:  # a server gone, a full disk: the run stands
                    name = type(logger).__name__
                    log.warning("%s: could not record the run's end: %s", name, exc)


def _end_run(logger, configs: dict[str, Any], record: dict, run_dir: Path) -> None:
    from pytorch_lightning.loggers import MLFlowLogger, WandbLogger

    from dlexp.config.logger import MLflowConfig

    if isinstance(logger, MLFlowLogger):
        cfg = next((c for c in configs.values() if isinstance(c, MLflowConfig)), MLflowConfig())
        _end_mlflow(logger, record, run_dir, cfg.log_checkpoint)
    elif isinstance(logger, WandbLogger):
        _end_wandb(record)


class SweepTracking(Callback):
    """Hydra callback: while a multirun runs, its directory (and, with ``logger.mlflow``, its
    MLflow parent run) is in the environment of the jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        os.environ[SWEEP_ENV] = str(sweep_dir)
        node = (config.get("logger") or {}).get("mlflow")
        if isinstance(node, DictConfig):
            try:
                parent = open_parent_run(OmegaConf.to_object(node), sweep_dir)
                os.environ[MLFLOW_PARENT_ENV] = parent
            except Exception as exc:  # the jobs report their own runs' failures
                log.warning("MLflow: no parent run for the sweep (%s)", " ".join(str(exc).split()))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEEP_ENV, None)
        parent = os.environ.pop(MLFLOW_PARENT_ENV, None)
        node = (config.get("logger") or {}).get("mlflow")
        if parent and isinstance(node, DictConfig):
            client = mlflow_client(OmegaConf.to_object(node))
            sweep_dir = Path(config.hydra.sweep.dir).resolve()
            for name in ("summary.csv", "summary.md"):
                if (sweep_dir / name).is_file():
                    client.log_artifact(parent, str(sweep_dir / name))
            client.set_terminated(parent, "FINISHED")

"""``dlexp train``: one run, from a composed config to ``metrics.json``.

Read top to bottom, this is the whole training path: seed, data, model, LightningModule,
callbacks and loggers, Trainer, fit, test on the best checkpoint, record.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate

from dlexp.callbacks import (
    CallbackGroup,
    ConfusionMatrixReport,
    EpochHistory,
    build_callbacks,
    find_checkpoint_callback,
    stop_record,
)
from dlexp.config import Config, to_yaml
from dlexp.config.scheduler import scheduler_factory
from dlexp.console import set_verbose
from dlexp.data import build_datamodule
from dlexp.distributed import job_scope
from dlexp.errors import InputError, RunDiverged, RunInterrupted, TrainingError
from dlexp.guards import DivergenceGuard, InterruptCheckpoint, InterruptHandler
from dlexp.inspect.callbacks import LayerPictures, fixed_images
from dlexp.io import atomic_write_text, remove_stale_temps
from dlexp.loggers import SampleImages, build_loggers, log_final_hparams, log_run_config
from dlexp.loss import ClassificationLoss
from dlexp.models import build_model, fit_to_data
from dlexp.progress import LayerSummary
from dlexp.pseudo_label import module_class
from dlexp.record import RunRecord
from dlexp.regularization import WeightPenalty
from dlexp.resized_schedule import ResizedSchedule
from dlexp.resume import ResumePlan, plan_resume
from dlexp.resume_contract import resume_changes
from dlexp.run_config import inside
from dlexp.throughput import TrainingThroughput, macs_per_image
from dlexp.tracking import tracked
from dlexp.trainer import build_trainer
from dlexp.transfer.setup import prepare_transfer
from dlexp.tta import build_tta, tta_record

log = logging.getLogger(__name__)


def train(
    cfg: Config,
    run_dir: Path,
    overrides: list[str],
    plan: ResumePlan | None = None,
    pruning: pl.Callback | None = None,
) -> dict:
    """Train and test one configuration in ``run_dir``; return the ``metrics.json`` record.

    Bad input found while building (missing data, impossible model) raises before anything
    is written. Once training started, every ending is recorded: ``completed``, ``failed``,
    ``diverged`` (non-finite loss), ``interrupted`` (SIGINT/SIGTERM) or ``pruned`` (an Optuna
    trial stopped by ``pruning``, a :class:`dlexp.pruning.TrialPruning`; not tested). With
    ``resume`` set, a run already in ``run_dir`` is continued (see :mod:`dlexp.resume`); a DDP
    worker gets its rank 0's ``plan`` instead. Only global rank 0 writes files (see
    :mod:`dlexp.distributed`).
    """
    changes: dict[str, list] = {}
    if plan is None:  # (a DDP worker gets its rank 0's plan)
        if cfg.resume:
            changes = resume_changes(run_dir, cfg)  # refused changes: before anything is written
            plan = plan_resume(run_dir, extend="trainer.max_epochs" in changes)
        else:
            plan = ResumePlan()
        remove_stale_temps(run_dir)  # left by a process killed while writing
    if plan.skip:
        log.info("run %s is already completed; kept as it is", run_dir)
        return plan.previous
    if plan.checkpoint is not None and cfg.trainer.max_epochs < plan.epoch:
        raise InputError(
            f"trainer.max_epochs={cfg.trainer.max_epochs}: must be >= {plan.epoch}, the epochs "
            f"in {plan.checkpoint}"
        )
    record = RunRecord(run_dir, overrides, started=time.time(), previous=plan.previous)
    set_verbose(cfg.verbose)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build_datamodule(cfg.data, seed=cfg.seed, augment=cfg.augment, semi=cfg.semi)
    datamodule.setup("fit")
    model = build_model(
        cfg.model,
        in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes,
        image_size=datamodule.image_size,
    )
    transfer = prepare_transfer(cfg.transfer, model, cfg.model)
    fit_to_data(model, datamodule.train_split.images, datamodule.normalizer)  # whitening layers
    module_cls, semi_kwargs = module_class(cfg.semi)  # semi=pseudo_label: PseudoLabelModule
    module = module_cls(
        model,
        datamodule.normalizer,
        datamodule.num_classes,
        transfer.optimizer(instantiate(cfg.optimizer)),
        scheduler=scheduler_factory(cfg.scheduler),
        criterion=ClassificationLoss(cfg.loss.label_smoothing),
        penalty=WeightPenalty(cfg.regularization, model, n=len(datamodule.train_split)),
        tta=build_tta(cfg.test, cfg.data.flip_ok),
        **semi_kwargs,
    )
    history = EpochHistory(run_dir / "epochs.csv", resume_after_epoch=plan.epoch)
    interrupts = InterruptHandler()
    resume_step = plan.global_step if plan.checkpoint else None
    loggers = build_loggers(cfg.logger, run_dir, resume_step=resume_step)
    configured = build_callbacks(cfg.callbacks, run_dir, with_logger=bool(loggers))
    throughput = TrainingThroughput()
    own = [  # the guard first: a diverged epoch ends before anything records it
        DivergenceGuard(every=cfg.trainer.log_every_n_steps),
        history,
        throughput,
        ConfusionMatrixReport(run_dir, datamodule.class_names),
        LayerPictures(run_dir, fixed_images(datamodule.test_split)),
        InterruptCheckpoint(run_dir / "checkpoints" / "interrupted.ckpt", interrupts),
    ]
    if plan.checkpoint is None:
        own.append(SampleImages())
    if cfg.trainer.enable_model_summary and not cfg.verbose:
        own.append(LayerSummary())  # (verbose: Lightning's summary of every submodule)
    others = [*configured, *transfer.callbacks]
    if plan.checkpoint is not None and "trainer.max_epochs" in changes:
        others.append(ResizedSchedule())
    if pruning is not None:
        others.append(pruning)
    callbacks = CallbackGroup.gather(own, others)  # one Lightning call per hook for most
    trainer = build_trainer(
        cfg.trainer,
        callbacks=callbacks,
        loggers=loggers,
        run_dir=run_dir,
        resume=plan.checkpoint,
        verbose=cfg.verbose,
    )
    record.writes = trainer.is_global_zero
    if trainer.is_global_zero:  # DDP workers of ranks > 0 train from this very file
        saved = dataclasses.replace(cfg, resume=None)  # how it was started is not its config
        atomic_write_text(run_dir / "config.yaml", to_yaml(saved))
    if plan.previous is not None:  # what this resume applies, recorded as it starts
        resumes = [
            *(plan.previous.get("resumes") or []),
            {"at_epoch": plan.epoch, "changed": changes},
        ]
        record.data["resumes"] = resumes
    running = dict(
        status="running",
        num_params=sum(p.numel() for p in model.parameters()),
        data={
            "train": len(datamodule.train_split),
            "val": len(datamodule.val_split),
            "test": len(datamodule.test_split),
            "num_classes": datamodule.num_classes,
            "image_size": datamodule.image_size,
            "in_channels": datamodule.in_channels,
            "class_names": datamodule.class_names,
        },
        transfer=transfer.record,
    )
    if datamodule.unlabeled_split is not None:  # semi=pseudo_label
        running["data"]["unlabeled"] = len(datamodule.unlabeled_split)
    checkpoint = find_checkpoint_callback(callbacks)

    def record_stopped(**why) -> None:
        """``status: interrupted`` at the last completed epoch (resumable from there)."""
        done = len(history.rows)
        record.save(status="interrupted", epochs=done, last_completed_epoch=done, **why)

    with interrupts, job_scope(trainer), tracked(loggers, cfg.logger, record, run_dir):
        try:
            record.save(**running)
            log_run_config(loggers, cfg)  # (rank 0 logs)
            trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
            stopped = stop_record(trainer, callbacks)
            best_path = checkpoint.best_model_path if checkpoint else ""
            pruned = getattr(pruning, "pruned_at", None)
            tested = (
                None
                if pruned
                else trainer.test(
                    module,
                    datamodule=datamodule,
                    ckpt_path=best_path or None,
                    verbose=False,
                    weights_only=True,
                )
            )
        except RunInterrupted as exc:
            interrupts.seen()
            record_stopped(signal=signal.Signals(exc.signum).name)
            raise
        except RunDiverged as exc:
            record.save(
                status="diverged",
                epochs=len(history.rows),
                diverged={"step": exc.step, "epoch": exc.epoch, "loss": exc.loss},
            )
            raise
        except Exception as exc:
            log.debug("training failed", exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
            if interrupts.signum is not None:  # a library turned the interruption into an error
                interrupts.seen()
                record_stopped(signal=signal.Signals(interrupts.signum).name)
                raise RunInterrupted(interrupts.signum) from exc
            if plan.checkpoint is not None:  # a failed resume: the run stays resumable
                record_stopped(resume_error=error)
            else:
                record.save(status="failed", error=error, epochs=len(history.rows))
            raise TrainingError(f"training failed: {error}") from exc
        if interrupts.pending():  # a signal whose raise was lost: recorded as interrupted
            record_stopped(signal=signal.Signals(interrupts.signum).name)
            raise RunInterrupted(interrupts.signum)
        interrupts.finish()  # signals from here on are ignored: the result is being recorded
        monitor, mode = (checkpoint.monitor, checkpoint.mode) if checkpoint else ("val/loss", "min")
        best = history.best(monitor, mode) or {}
        record.save(
            status="pruned" if pruned else "completed",
            **({"pruned_at_epoch": pruned} if pruned else {}),
            epochs=len(history.rows),
            best_epoch=best.get("epoch"),
            monitor={"metric": monitor, "mode": mode},
            best={k: v for k, v in best.items() if k.startswith("val/")},
            stopped=stopped,
            test={k: round(float(v), 6) for k, v in (tested[0] if tested else {}).items()},
            test_tta=tta_record(cfg.test, cfg.data.flip_ok),
            best_checkpoint=inside(best_path, run_dir),
            first_step_at=history.first_step_at,
            throughput=throughput.record(),
            macs_per_image=macs_per_image(cfg.model, datamodule),  # (here: not in the startup)
        )
    log_final_hparams(loggers, cfg, record.data)
    return record.data

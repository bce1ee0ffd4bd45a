"""A step-wise schedule rebuilt for a resumed run's new length (``resume=… trainer.max_epochs=N``).

``onecycle`` and ``cosine`` are sized by the run's total number of optimizer steps, which
the checkpoint's scheduler state fixes. When a resume changes ``trainer.max_epochs``, the
restored schedule is replaced by the one a run of the new length builds, advanced to the
step the run has reached: from there on the learning rate is, step for step, that of an
uninterrupted run configured with the new ``trainer.max_epochs``.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl


class ResizedSchedule(pl.Callback):
    """After Lightning restored the checkpoint, resizes every step-wise scheduler."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        factory = getattr(pl_module, "scheduler_factory", None)
        if factory is None:
            return
        for config in trainer.lr_scheduler_configs:
            if config.interval != "step":
                continue  # epoch-wise schedules do not depend on the run's length
            restored = config.scheduler
            optimizer = pl_module.optimizer_factory(pl_module.parameters())  # a fresh twin
            fresh = factory(
                optimizer,
                total_steps=int(trainer.estimated_stepping_batches),
                max_epochs=trainer.max_epochs,
            )["scheduler"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
                for _ in range(restored.last_epoch - fresh.last_epoch):
                    fresh.step()
            restored.load_state_dict(fresh.state_dict())
            for target, source in zip(
                restored.optimizer.param_groups, optimizer.param_groups, strict=True
            ):
                target.update({k: v for k, v in source.items() if k != "params"})

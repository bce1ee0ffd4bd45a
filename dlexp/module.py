"""The LightningModule for image classification: loss, penalty, metrics, optimizer wiring."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from dlexp.loss import ClassificationLoss, hard_labels
from dlexp.regularization import WeightPenalty
from dlexp.schedulers import SchedulerFactory

OptimizerFactory = Callable[[object], torch.optim.Optimizer]


class ClassificationModule(pl.LightningModule):
    """Cross-entropy classification of normalized images.

    ``input_transform`` (the data's :class:`~dlexp.data.normalize.InputNormalizer`) turns the
    uint8 batches into the model's input and is saved in every checkpoint with the model.
    Metrics are logged as ``train/…``, ``val/…`` and ``test/…`` (loss, acc, f1); the test
    confusion matrix is kept in :attr:`test_confusion` for the callbacks that report it.

    Training minimizes ``criterion`` (cross-entropy, label smoothing) on the batch plus the
    weight ``penalty`` (logged as ``train/penalty``; ``train/loss`` is the data loss alone).
    Training targets may be soft (mixup/cutmix); training metrics then score the dominant
    class. Validation and test losses are the plain cross-entropy.
    """

    def __init__(
        self,
        model: nn.Module,
        input_transform: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        *,
        scheduler: SchedulerFactory | None = None,
        criterion: nn.Module | None = None,
        penalty: WeightPenalty | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.input_transform = input_transform
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.criterion = criterion if criterion is not None else ClassificationLoss()
        self.penalty = penalty if penalty is not None and penalty.active else None
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.input_transform(images))

    def _step(
        self, batch, stage: str, metrics: MetricCollection
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        if stage == "train" and getattr(self.model, "aux_heads", None):
            # auxiliary classifiers (GoogLeNet) add their weighted losses in training
            logits, aux_logits = self.model.forward_aux(self.input_transform(images))
        else:
            logits, aux_logits = self(images), []
        loss_fn = self.criterion if stage == "train" else F.cross_entropy
        loss = loss_fn(logits, targets)
        for aux in aux_logits:
            loss = loss + self.model.aux_weight * loss_fn(aux, targets)
        metrics.update(logits, hard_labels(targets))
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=len(targets),
            sync_dist=True,  # the mean over all DDP processes (no-op in one process)
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss, logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train", self.train_metrics)[0]
        if self.penalty is None:
            return loss
        penalty = self.penalty()
        self.log("train/penalty", penalty, on_step=False, on_epoch=True, batch_size=len(batch[1]))
        return loss + penalty

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "test", self.test_metrics)
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return torch.softmax(self(images), dim=1)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        schedule = self.scheduler_factory(
            optimizer,
            total_steps=int(self.trainer.estimated_stepping_batches),
            max_epochs=self.trainer.max_epochs,
        )
        return {"optimizer": optimizer, "lr_scheduler": schedule}

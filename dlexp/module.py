"""The LightningModule for image classification: loss, penalty, metrics, optimizer wiring."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score
from torchmetrics.utilities import dim_zero_cat

from dlexp.compat.lightning import LightHookModule
from dlexp.config.scheduler import SchedulerFactory
from dlexp.guards import restore_rng_states, save_rng_states
from dlexp.loss import ClassificationLoss, hard_labels
from dlexp.regularization import WeightPenalty

OptimizerFactory = Callable[[object], torch.optim.Optimizer]
# test-time augmentation (dlexp.tta): the test's logits from the module's forward and a batch
TestLogits = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


class BatchMean(Metric):
    """The mean of per-batch means (a loss), weighted by batch size; NaN stays NaN.

    Not torchmetrics' MeanMetric: its NaN check reads a GPU tensor on the host at every
    update, and with ``nan_strategy="disable"`` (torchmetrics 1.9) it drops the weights.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch_mean: torch.Tensor, batch_size: int) -> None:
        # in place: `self.total += ...` would set the attribute again through nn.Module
        self.total.add_(batch_mean.detach().float(), alpha=batch_size)
        self.count.add_(batch_size)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class EpochScore(Metric):
    """A classification score of every prediction of an epoch, computed once, at its end.

    ``update`` keeps the batch's predicted and true classes on their device (no copy, no
    host read); ``compute`` scores them all with torchmetrics' functional ``score``, so the
    value equals its per-batch class (``MulticlassAccuracy`` …) updated at every step, for
    about a tenth of the cost per step. Under DDP the classes of all processes are scored.
    """

    full_state_update = False

    def __init__(self, score: Callable[..., torch.Tensor], num_classes: int) -> None:
        super().__init__()
        self.score, self.num_classes = score, num_classes
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds)
        self.target.append(target)

    def __hash__(self) -> int:
        # torchmetrics hashes every kept tensor, at each train()/eval() switch (O(steps));
        # like its own hash, identity tells metrics apart
        return id(self)

    def compute(self) -> torch.Tensor:
        preds, target = dim_zero_cat(self.preds), dim_zero_cat(self.target)
        return self.score(preds, target, self.num_classes, validate_args=False)


def epoch_scores(num_classes: int) -> nn.ModuleDict:
    """``acc`` (micro: the share of correct predictions) and ``f1`` (macro over classes).

    A plain dict, not a MetricCollection: that one's update costs ~10 us more a step.
    """
    return nn.ModuleDict(
        {
            "acc": EpochScore(partial(multiclass_accuracy, average="micro"), num_classes),
            "f1": EpochScore(partial(multiclass_f1_score, average="macro"), num_classes),
        }
    )


class ClassificationModule(LightHookModule):
    """Cross-entropy classification of normalized images.

    ``input_transform`` (the data's :class:`~dlexp.data.normalize.InputNormalizer`) turns the
    uint8 batches into the model's input and is saved in every checkpoint with the model.
    Metrics are logged as ``train/…``, ``val/…`` and ``test/…`` (loss, acc, f1); the test
    confusion matrix is kept in :attr:`test_confusion` for the callbacks that report it.
    Each is a torchmetrics object updated every step and handed to ``self.log`` once per
    epoch: Lightning computes it over the whole epoch and resets it, without the ~1 ms that
    every ``self.log`` call costs (a per-step log would triple a small model's step time).
    Accuracy and F1 keep the predicted classes and score them at the epoch's end
    (:class:`EpochScore`); nothing in a step reads a value back to the host.

    Training minimizes ``criterion`` (cross-entropy, label smoothing) on the batch plus the
    weight ``penalty`` (logged as ``train/penalty``; ``train/loss`` is the data loss alone).
    Training targets may be soft (mixup/cutmix); training metrics then score the dominant
    class. Validation and test losses are the plain cross-entropy. With ``tta`` set, the
    test scores each batch by its logits averaged over augmented views (:mod:`dlexp.tta`).
    Every checkpoint carries the global RNG states; a Trainer restoring one restores them.
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
        tta: TestLogits | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.input_transform = input_transform
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        plain = ClassificationLoss(label_smoothing=0.0)  # eval and predict train nothing
        self.criterion = criterion if criterion is not None else plain
        self.penalty = penalty if penalty is not None and penalty.active else None
        self.tta = tta  # the test's logits, when set (never training's or validation's)
        self.train_metrics, self.val_metrics, self.test_metrics = (
            epoch_scores(num_classes) for _ in range(3)
        )
        self.train_loss, self.val_loss, self.test_loss, self.train_penalty = (
            BatchMean() for _ in range(4)
        )
        self.test_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        # per stage (a plain dict, looked up every step): its loss mean, its scores, and what
        # self.log is handed once an epoch, (name, metric, shown in the progress bar)
        self._stage_metrics = {
            stage: (
                mean_loss,
                tuple(scores.values()),
                [
                    (f"{stage}/loss", mean_loss, stage != "test"),
                    *((f"{stage}/{name}", m, stage == "val") for name, m in scores.items()),
                ],
            )
            for stage, mean_loss, scores in (
                ("train", self.train_loss, self.train_metrics),
                ("val", self.val_loss, self.val_metrics),
                ("test", self.test_loss, self.test_metrics),
            )
        }
        self._aux_heads = bool(getattr(model, "aux_heads", None))
        self._logged: set[str] = set()  # the stages (and metrics) handed to self.log this epoch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.input_transform(images))

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        if stage == "train" and self._aux_heads:
            # auxiliary classifiers (GoogLeNet) add their weighted losses in training
            logits, aux_logits = self.model.forward_aux(self.input_transform(images))
        elif stage == "test" and self.tta is not None:
            logits, aux_logits = self.tta(self, images), []
        else:
            logits, aux_logits = self.forward(images), []  # (not self(): no module hooks here)
        loss_fn = self.criterion if stage == "train" else F.cross_entropy
        loss = loss_fn(logits, targets)
        for aux in aux_logits:
            loss = loss + self.model.aux_weight * loss_fn(aux, targets)
        mean_loss, scores, logged = self._stage_metrics[stage]
        mean_loss.update(loss, len(targets))
        preds, labels = logits.detach().argmax(dim=1), hard_labels(targets)
        for score in scores:
            score.update(preds, labels)
        self._log_once(stage, logged)
        return loss, logits

    def _log_once(self, key: str, logged: list[tuple[str, Metric, bool]]) -> None:
        """Hands each ``(name, metric, prog_bar)`` to Lightning at ``key``'s first update of
        the epoch (see the class doc).

        Lightning then keeps it, computes it over every update at the end of the epoch (synced
        across DDP processes) and resets it for the next.
        """
        if key in self._logged:
            return
        self._logged.add(key)
        for name, metric, prog_bar in logged:
            self.log(name, metric, on_step=False, on_epoch=True, prog_bar=prog_bar)

    def _new_epoch(self, stage: str) -> None:
        self._logged = {key for key in self._logged if key.split("/")[0] != stage}

    def on_train_epoch_start(self) -> None:
        self._new_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self._new_epoch("val")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")[0]
        if self.penalty is None:
            return loss
        penalty = self.penalty()
        self.train_penalty.update(penalty, len(batch[1]))
        self._log_once("train/penalty", [("train/penalty", self.train_penalty, False)])
        return loss + penalty

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.test_confusion.update(logits.detach(), batch[1])

    def on_test_epoch_start(self) -> None:
        self._new_epoch("test")
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return torch.softmax(self(images), dim=1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_rng_states(checkpoint)

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

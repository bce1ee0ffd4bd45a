"""Pseudo-labelling (``semi=pseudo_label``): training on the model's confident predictions.

Each training batch is ``(images, labels, unlabeled_images)``
(:class:`~dlexp.data.combined.LabeledAndUnlabeled`). :class:`PseudoLabelModule` adds to
the labeled loss of :class:`~dlexp.module.ClassificationModule` the ramped-up weight
(:func:`rampup_weight`) times :class:`PseudoLabelLoss` of the unlabeled images. The
unlabeled images' own labels never reach this code: the data module drops them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlexp.config.semi import PseudoLabelConfig
from dlexp.module import BatchMean, ClassificationModule


class PseudoLabelLoss(nn.Module):
    """Cross-entropy of ``logits`` against their own most likely class (Lee 2013), counted
    for the images whose probability of that class is at least ``threshold`` (FixMatch's
    mask) and averaged over the whole batch. No gradient flows through the targets."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the mask (1.0 where an image's pseudo-label counts)."""
        confidence, pseudo = logits.detach().softmax(dim=1).max(dim=1)
        mask = (confidence >= self.threshold).float()
        loss = (F.cross_entropy(logits, pseudo, reduction="none") * mask).mean()
        return loss, mask


def rampup_weight(epoch: float, weight: float, rampup_epochs: float) -> float:
    """``weight * exp(-5 (1 - epoch/rampup_epochs)^2)`` until ``rampup_epochs``, then
    ``weight`` (the sigmoid-shaped ramp-up of Laine & Aila 2017); ``epoch`` is fractional."""
    if epoch >= rampup_epochs:
        return weight
    return weight * math.exp(-5.0 * (1.0 - epoch / rampup_epochs) ** 2)


class PseudoLabelModule(ClassificationModule):
    """:class:`ClassificationModule` that also trains on pseudo-labels of unlabeled images.

    Logs per epoch ``train/unlabeled_loss`` (unweighted), ``train/pseudo_share`` (the share
    of unlabeled images above the threshold) and ``train/unlabeled_weight``. ``train/loss``
    and the training scores stay those of the labeled batches. At weight 0 the unlabeled
    images are not even forwarded: supervised training on the same batches and steps.
    """

    def __init__(self, *args, semi: PseudoLabelConfig, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.semi = semi
        self.pseudo_loss = PseudoLabelLoss(semi.threshold)
        self.unlabeled_loss, self.pseudo_share, self.unlabeled_weight = (
            BatchMean() for _ in range(3)
        )
        self._unlabeled_logged = [  # (name, metric, shown in the progress bar)
            ("train/unlabeled_loss", self.unlabeled_loss, False),
            ("train/pseudo_share", self.pseudo_share, False),
            ("train/unlabeled_weight", self.unlabeled_weight, False),
        ]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets, unlabeled = batch
        loss = super().training_step((images, targets), batch_idx)
        epoch = self.current_epoch + batch_idx / max(1, self.trainer.num_training_batches)
        weight = rampup_weight(epoch, self.semi.weight, self.semi.rampup_epochs)
        if weight == 0:
            return loss
        pseudo_loss, mask = self.pseudo_loss(self.forward(unlabeled))
        count = len(unlabeled)
        self.unlabeled_loss.update(pseudo_loss, count)
        self.pseudo_share.update(mask.mean(), count)
        self.unlabeled_weight.update(torch.tensor(weight), count)
        self._log_once("train/unlabeled", self._unlabeled_logged)
        return loss + weight * pseudo_loss


def module_class(semi) -> tuple[type[ClassificationModule], dict]:
    """The LightningModule class for the ``semi`` option, and its extra keyword arguments."""
    if isinstance(semi, PseudoLabelConfig):
        return PseudoLabelModule, {"semi": semi}
    return ClassificationModule, {}

"""Learning from unlabeled data (``semi=pseudo_label``): which images the pseudo-label path
sees, the masked loss, its ramp-up, and a run end to end."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from dlexp.config import to_config, to_yaml
from dlexp.config.data import DigitsConfig
from dlexp.config.semi import NoSemiConfig, PseudoLabelConfig
from dlexp.data import build_datamodule
from dlexp.data.digits import DigitsDataModule
from dlexp.data.splits import RawData, Split
from dlexp.pseudo_label import PseudoLabelLoss, PseudoLabelModule, rampup_weight

from conftest import (
    QUICK,
    compose_config,
    only_run_dir,
    read_epochs,
    read_metrics,
    run_inprocess,
    run_python,
)


def test_loss_counts_only_predictions_above_the_threshold():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    loss, mask = PseudoLabelLoss(threshold=0.9)(logits)  # confidences 0.965, 0.36, 0.987
    assert mask.tolist() == [1.0, 0.0, 1.0]
    kept = F.cross_entropy(logits[[0, 2]], torch.tensor([0, 2]), reduction="sum")
    assert loss.item() == pytest.approx(kept.item() / 3)  # averaged over the whole batch
    loss.backward()
    assert torch.all(logits.grad[1] == 0)  # the unconfident image teaches nothing
    assert torch.all(logits.grad[0].abs() > 0) and torch.all(logits.grad[2].abs() > 0)
    assert PseudoLabelLoss(threshold=0.99)(logits.detach())[1].tolist() == [0.0, 0.0, 0.0]


def test_rampup_rises_from_near_zero_to_the_weight_and_stays():
    assert rampup_weight(0.0, 2.0, 10.0) == pytest.approx(2.0 * math.exp(-5.0))
    assert rampup_weight(5.0, 2.0, 10.0) == pytest.approx(2.0 * math.exp(-1.25))
    assert rampup_weight(10.0, 2.0, 10.0) == rampup_weight(25.0, 2.0, 10.0) == 2.0
    ramp = [rampup_weight(t / 4, 1.0, 10.0) for t in range(41)]
    assert all(a < b for a, b in pairwise(ramp))
    assert rampup_weight(0.0, 3.0, 0.0) == 3.0  # no ramp-up: the full weight at once
    assert rampup_weight(7.0, 0.0, 10.0) == 0.0  # weight 0: supervised only


class NumberedImages(DigitsDataModule):
    """1,000 8x8 images whose first two pixels spell their index; label = index mod 10."""

    reuse_loads = False

    def load(self) -> RawData:
        index = torch.arange(1000)
        images = torch.randint(0, 256, (1000, 1, 8, 8), dtype=torch.uint8)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = index // 256, index % 256
        return RawData(Split(images, index % 10), None, 10, [str(c) for c in range(10)])


def ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() * 256 + images[:, 0, 0, 1].long()).tolist()


class SeenImages(pl.Callback):
    """The indices of the labeled and the unlabeled images of every training batch."""

    def __init__(self) -> None:
        self.labeled: list[int] = []
        self.unlabeled: list[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.unlabeled.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        images, labels, unlabeled = batch
        assert unlabeled.dtype == torch.uint8 and unlabeled.dim() == 4  # images, no labels
        assert labels.tolist() == [i % 10 for i in ids(images)]
        self.labeled += ids(images)
        self.unlabeled[-1] += ids(unlabeled)


@pytest.mark.parametrize("loader", ["memory", "dataloader"])
def test_pseudo_labels_come_only_from_the_unlabeled_rest_of_the_training_split(loader):
    semi = PseudoLabelConfig(labels_per_class=5, threshold=0.05, rampup_epochs=0.0)
    data = NumberedImages(
        DigitsConfig(image_size=8, batch_size=32, loader=loader), seed=3, semi=semi
    )
    data.setup("fit")
    labeled, unlabeled = set(ids(data.train_split.images)), set(ids(data.unlabeled_split.images))
    held_out = set(ids(data.val_split.images)) | set(ids(data.test_split.images))
    assert len(labeled) == 50 and len(unlabeled) == 700 - 50
    assert sorted(labeled | unlabeled | held_out) == list(range(1000))
    assert data.unlabeled_split.labels.eq(-1).all()  # dropped when the split is made
    module = PseudoLabelModule(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
        data.normalizer,
        10,
        lambda params: torch.optim.SGD(params, lr=0.1),
        semi=semi,
    )
    seen = SeenImages()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[seen],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    assert set(seen.labeled) == labeled  # the labeled subset, drawn again as needed
    for epoch in seen.unlabeled:  # every unlabeled image once an epoch, nothing else
        assert sorted(epoch) == sorted(unlabeled)
    assert seen.unlabeled[0] != seen.unlabeled[1]  # in a new order
    assert 0 < trainer.callback_metrics["train/pseudo_share"] <= 1  # the path ran on them


def test_labeled_subset_is_the_per_class_subsample_and_held_out_splits_stay():
    plain = build_datamodule(DigitsConfig(train_samples_per_class=10), seed=4)
    semi = build_datamodule(DigitsConfig(), seed=4, semi=PseudoLabelConfig(labels_per_class=10))
    plain.setup("fit")
    semi.setup("fit")
    assert torch.equal(semi.train_split.images, plain.train_split.images)
    assert torch.equal(semi.train_split.labels, plain.train_split.labels)
    assert torch.equal(semi.test_split.images, plain.test_split.images)
    assert torch.equal(semi.val_split.images, plain.val_split.images)
    assert len(semi.unlabeled_split) == 1257 - 100


def test_pseudo_label_run_on_digits_completes_and_logs_the_unlabeled_loss(tmp_path):
    args = ["semi=pseudo_label", "semi.rampup_epochs=1", "semi.unlabeled_ratio=4"]
    assert run_inprocess("train", *QUICK, *args, "logger=none", cwd=tmp_path) == 0
    run = only_run_dir(tmp_path)
    record = read_metrics(run)
    assert record["status"] == "completed"
    assert (record["data"]["train"], record["data"]["unlabeled"]) == (100, 1157)
    assert record["test"]["test/acc"] > 0.3  # 10 classes: chance is 0.1
    rows = read_epochs(run)
    assert [float(r["train/unlabeled_weight"]) for r in rows][-1] == 1.0  # ramped up
    assert float(rows[0]["train/unlabeled_weight"]) < 1.0
    assert all(0 <= float(r["train/pseudo_share"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["semi.threshold=0"], "semi.threshold=0.0: must be a number in (0, 1]"),
        (["semi.labels_per_class=200"], "semi.labels_per_class=200: must be < 121"),
        (["semi.labels_per_class=20", "data.train_samples_per_class=20"],
         "semi.labels_per_class=20: must be < 20"),
    ],
)  # fmt: skip
def test_bad_semi_values_are_one_line_without_torch(tmp_path, args, message):
    line = ["train", "semi=pseudo_label", *args]
    code = f"from dlexp.cli import main\nprint('exit', main({line!r}))"
    done, heavy = run_python(code, cwd=tmp_path, HOME=str(tmp_path))
    assert (done.stdout.split()[-1], heavy) == ("2", []), done.stderr
    assert message in done.stderr and done.stderr.count("error:") == 1
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_run_saved_before_the_semi_group_reads_as_supervised_only():
    saved = OmegaConf.create(to_yaml(compose_config("semi=pseudo_label")))
    del saved["semi"]
    assert to_config(saved).semi == NoSemiConfig()

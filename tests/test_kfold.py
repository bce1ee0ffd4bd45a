"""k-fold cross-validation (``data.folds``/``data.fold``): folds that partition the training
split, stratified and seeded, on every kind of dataset; normalization from each fold's
training part; ``-m data.fold=all`` as one sweep, reported as mean ± std over the folds."""

from __future__ import annotations

import csv
import statistics
from collections import Counter

import pytest
import torch
from test_datasets import COLOURS, datamodule, write_pngs

from dlexp.config.data import DigitsConfig
from dlexp.data import build_datamodule
from dlexp.data.splits import stratified_folds
from dlexp.errors import ConfigError

from conftest import NaturalConfig, natural_images, read_metrics, run_inprocess


def digits(**kw):
    dm = build_datamodule(DigitsConfig(**kw), seed=0)
    dm.setup("fit")
    return dm


def images(split) -> Counter:
    """The images of ``split`` as a multiset (their bytes)."""
    return Counter(image.numpy().tobytes() for image in split.images)


def test_stratified_folds_partition_the_labels_by_class_from_the_seed():
    labels = torch.arange(103) % 4  # classes of 26, 26, 26 and 25 items
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(103))  # each index in one fold
    for fold in folds:
        assert fold.tolist() == sorted(fold.tolist())
        counts = torch.bincount(labels[fold], minlength=4)
        assert counts.min() >= 5 and counts.max() <= 6  # 26/5 or 25/5 of every class
    again, other = stratified_folds(labels, 5, seed=0), stratified_folds(labels, 5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(folds, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(folds, other, strict=True))


def test_digits_folds_partition_the_training_split_and_leave_the_test_split_alone():
    plain = digits()
    pool = images(plain.train_split) + images(plain.val_split)  # what the test split leaves
    held_out = Counter()
    for fold in range(5):
        dm = digits(folds=5, fold=fold)
        assert torch.equal(dm.test_split.images, plain.test_split.images)
        assert images(dm.train_split) + images(dm.val_split) == pool
        assert not images(dm.train_split) & images(dm.val_split)
        assert len(dm.val_split) in (305, 306)  # 1,527 / 5
        share = torch.bincount(dm.val_split.labels, minlength=10).float() / len(dm.val_split)
        assert share.min() > 0.09 and share.max() < 0.11  # each class ~10%, as in the split
        held_out += images(dm.val_split)
    assert held_out == pool  # the five validation folds are the training split, once each
    again = digits(folds=5, fold=4)  # the same folds from the same seed
    assert torch.equal(again.val_split.images, dm.val_split.images)
    assert torch.equal(again.train_split.images, dm.train_split.images)


@pytest.mark.parametrize("mode", ["standardize", "minmax"])
def test_normalization_statistics_come_from_the_folds_training_part(mode):
    plain = digits(normalize=mode)
    pool = torch.cat([plain.train_split.images, plain.val_split.images]).double() / 255
    shifts = []
    for fold in (0, 1):
        dm = digits(folds=3, fold=fold, normalize=mode)
        train = dm.train_split.images.double() / 255
        expected = train.mean() if mode == "standardize" else train.min()
        scale = train.std() if mode == "standardize" else train.max() - train.min()
        assert dm.normalizer.shift.item() == pytest.approx(expected.item(), abs=1e-6)
        assert dm.normalizer.scale.item() == pytest.approx(scale.item(), abs=1e-6)
        shifts.append(dm.normalizer.shift.item())
    if mode == "standardize":  # the mean of the whole split is another number
        assert shifts[0] != pytest.approx(pool.mean().item(), abs=1e-7)
        assert shifts[0] != pytest.approx(shifts[1], abs=1e-7)


def test_imagefolder_folds_with_and_without_a_test_folder(tmp_path):
    write_pngs(tmp_path / "photos", COLOURS, count=10)
    common = ["data=imagefolder", "data.image_size=12", "data.test_fraction=0.2", "data.folds=4"]
    for fold in range(4):  # 8 images of each class left by the test split: 2 per fold
        dm = datamodule(*common, f"data.root={tmp_path / 'photos'}", f"data.fold={fold}")
        assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (18, 6, 6)
        assert torch.bincount(dm.val_split.labels).tolist() == [2, 2, 2]
    write_pngs(tmp_path / "test", COLOURS, count=2)
    dm = datamodule(*common, f"data.root={tmp_path / 'photos'}", "data.fold=1",
                    f"data.test_root={tmp_path / 'test'}")  # fmt: skip
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (22, 8, 6)
    with pytest.raises(ConfigError, match=r"data.folds=11: must be <= 10, the images of the smal"):
        datamodule(*common[:3], "data.folds=11", "data.fold=0", "data.test_root=" +
                   str(tmp_path / "test"), f"data.root={tmp_path / 'photos'}")  # fmt: skip


def test_a_dataset_with_its_own_test_split_keeps_it_and_folds_its_training_split():
    dataset = natural_images(total=130, test=30)
    dm = dataset(NaturalConfig(folds=4, fold=3), seed=0)
    dm.setup("fit")
    raw = dm.load()
    assert torch.equal(dm.test_split.images, raw.test.images)
    assert images(dm.train_split) + images(dm.val_split) == images(raw.train)
    assert len(dm.val_split) == 25  # a quarter of 100 training images, 10 of each class
    assert set(torch.bincount(dm.val_split.labels).tolist()) == {2, 3}


TINY = [
    "model=mlp",
    "model.hidden_sizes=[16]",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "logger=none",
]


def test_fold_all_sweeps_every_fold_and_the_report_averages_over_them(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "data.folds=3", "data.fold=all", *TINY, f"hydra.sweep.dir={sweep}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    records = [read_metrics(sweep / str(job)) for job in range(3)]
    assert not (sweep / "3").exists()
    task = (sweep / "multirun.yaml").read_text()  # what dlexp resume-sweep runs again
    assert "- data.fold=0,1,2\n" in task and "data.fold=all" not in task
    folds = [[o for o in r["overrides"] if o.startswith("data.fold")] for r in records]
    assert folds == [["data.folds=3", f"data.fold={i}"] for i in range(3)]
    assert sum(r["data"]["val"] for r in records) == 1527  # every image of the split validated
    assert {r["data"]["train"] + r["data"]["val"] for r in records} == {1527}
    assert {r["data"]["test"] for r in records} == {270}
    # the normalizer saved with the run is the one of its fold's training part
    state = torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)
    fold = datamodule("data.folds=3", "data.fold=1").train_split.images.double() / 255
    shift = state["state_dict"]["input_transform.shift"]
    assert shift.item() == pytest.approx(fold.mean().item(), abs=1e-6)

    assert run_inprocess("report", str(sweep), cwd=tmp_path) == 0
    with open(sweep / "groups.csv", newline="") as f:
        (group,) = list(csv.DictReader(f))
    values = [r["best"]["val/acc"] for r in records]
    assert group["n"] == "3"
    assert group["val/acc"] == f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def test_resume_and_eval_cannot_change_the_fold(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["data.folds=3", "data.fold=0", *TINY, f"hydra.run.dir={run}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    capsys.readouterr()
    for command, override, message in (
        ("train", "data.fold=1", "a resume cannot change data.fold (0 -> 1)"),
        ("train", "data.folds=4", "a resume cannot change data.folds (3 -> 4)"),
        ("eval", "data.fold=1", "dlexp eval cannot change data.fold"),
        ("eval", "data.folds=4", "dlexp eval cannot change data.folds"),
    ):
        where = f"resume={run}" if command == "train" else f"ckpt={run}"
        assert run_inprocess(command, where, override, cwd=tmp_path) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_more_folds_than_the_smallest_class_holds_is_one_error_line(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["data.folds=200", "data.fold=0", *TINY, f"hydra.run.dir={run}"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.folds=200: must be <= 1" in err[0], err
    assert "the images of the smallest class in the training split" in err[0]

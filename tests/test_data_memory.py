"""The in-memory data path (``data.loader=memory``) against the DataLoader path."""

from __future__ import annotations

import pytest
import torch

from dlexp.config.data import DigitsConfig
from dlexp.data.augment import AugmentConfig
from dlexp.data.base import ImageDataModule
from dlexp.data.digits import DigitsDataModule
from dlexp.data.memory import MemoryBatches

from conftest import (
    QUICK,
    NaturalConfig,
    augment_config,
    natural_images,
    only_run_dir,
    read_metrics,
    run_inprocess,
)

augment = augment_config
NaturalImages = natural_images(total=600, test=100)


def digits(loader: str, aug: AugmentConfig | None = None, seed: int = 0) -> DigitsDataModule:
    dm = DigitsDataModule(DigitsConfig(loader=loader), seed, aug)
    dm.setup("fit")
    return dm


def epoch_statistics(dm: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of one epoch of normalized training batches."""
    torch.manual_seed(0)
    x = torch.cat([dm.normalizer(images) for images, _ in dm.train_dataloader()])
    return x.mean((0, 2, 3)), x.std((0, 2, 3))


def test_memory_is_the_default_and_serves_uint8_batches_of_the_split():
    dm = digits(DigitsConfig.loader)
    loader = dm.train_dataloader()
    assert isinstance(loader, MemoryBatches)
    images, labels = zip(*loader, strict=True)
    assert len(images) == len(loader) == -(-len(dm.train_split) // dm.cfg.batch_size)
    assert images[0].dtype == torch.uint8 and labels[0].dtype == torch.long
    # one epoch serves every training image exactly once, in a shuffled order
    served, index = torch.cat(images), torch.cat(labels)
    assert sorted(served.flatten(1).sum(1).tolist()) == sorted(
        dm.train_split.images.flatten(1).sum(1).tolist()
    )
    assert not torch.equal(index, dm.train_split.labels)
    for split, loader in (
        (dm.val_split, dm.val_dataloader()),
        (dm.test_split, dm.test_dataloader()),
    ):
        xs, ys = zip(*loader, strict=True)
        assert torch.equal(torch.cat(xs), split.images) and torch.equal(torch.cat(ys), split.labels)


@pytest.mark.parametrize(
    ("level", "tolerance"),
    [("none", 1e-5), ("standard", 0.03)],
)
def test_both_paths_give_batches_with_the_same_normalization_statistics(level, tolerance):
    """Per-channel mean/std of an epoch of normalized batches agree within ``tolerance``.

    Without augmentation an epoch is the same multiset of images (equal up to float
    summation order); with ``standard`` (crop + affine on digits) both are samples of one
    distribution over 1,257 images: measured differences are below 0.01.
    """
    aug = augment(level)
    mean_m, std_m = epoch_statistics(digits("memory", aug))
    mean_d, std_d = epoch_statistics(digits("dataloader", aug))
    assert torch.allclose(mean_m, mean_d, atol=tolerance)
    assert torch.allclose(std_m, std_d, atol=tolerance)
    if level == "none":  # the training split is standardized: mean 0, std 1
        assert torch.allclose(mean_m, torch.zeros(1), atol=1e-5)
        assert torch.allclose(std_m, torch.ones(1), atol=1e-4)


def test_batched_crop_and_flip_draw_what_torchvision_draws():
    """Each image is a window of the zero-padded image (offset in [0, 2p]), maybe mirrored;
    offsets cover the range and about half the images are flipped."""
    dm = NaturalImages(NaturalConfig(batch_size=500), 0, augment("basic"))
    dm.setup("fit")
    images = next(iter(dm.train_dataloader()))[0]
    # re-derive this epoch's order: the loader's generator draws the permutation first
    order = dm.train_dataloader()._indices(dm.train_dataloader().sampler.generator())
    original = dm.train_split.images[order[: len(images)]]
    pad = 4
    padded = torch.nn.functional.pad(original, (pad,) * 4)
    offsets, flips = [], 0
    for x, p in zip(images, padded, strict=True):
        windows = (
            (dy, dx, flipped)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flipped in (False, True)
            if torch.equal(
                x,
                p[:, dy : dy + 32, dx : dx + 32].flip(-1)
                if flipped
                else p[:, dy : dy + 32, dx : dx + 32],
            )
        )
        found = next(windows, None)
        assert found is not None, "an image is no window of its padded original"
        offsets.append(found[:2])
        flips += found[2]
    assert {dy for dy, _ in offsets} == set(range(2 * pad + 1))
    assert 0.4 < flips / len(images) < 0.6


def test_erasing_blanks_one_rectangle_in_about_p_of_the_images():
    dm = NaturalImages(NaturalConfig(batch_size=500), 0, augment("none", "augment.erasing=0.5"))
    dm.setup("fit")
    loader = dm.train_dataloader()
    images = next(iter(loader))[0]
    order = loader._indices(loader.sampler.generator())
    original = dm.train_split.images[order[: len(images)]]
    changed = (images != original).flatten(1).any(1)
    assert 0.4 < changed.float().mean() < 0.6
    for x, o in zip(images[changed], original[changed], strict=True):
        zeroed = (x != o).any(0)
        rows, cols = zeroed.any(1).nonzero(), zeroed.any(0).nonzero()
        box = x[:, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (box == 0).all()  # a filled rectangle of zeros
        area = box.shape[1] * box.shape[2] / 1024
        assert 0.01 < area < 0.4


def test_memory_augmentation_is_reproducible_under_a_seed_and_differs_per_epoch():
    def epoch(seed: int, number: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        dm = NaturalImages(NaturalConfig(batch_size=64), seed, augment("strong"))
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(number)
        torch.manual_seed(seed + number + 123)  # the global RNG plays no part
        return list(loader)

    a, b = epoch(7, 3), epoch(7, 3)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))
    assert all(torch.equal(s, t) for (_, s), (_, t) in zip(a, b, strict=True))
    assert a[0][0].dtype == torch.float32 and a[0][1].shape == (64, 10)  # mixed batches
    assert not torch.equal(a[0][0], epoch(7, 4)[0][0])
    assert not torch.equal(a[0][0], epoch(8, 3)[0][0])


def test_ddp_ranks_draw_disjoint_equal_shards_of_each_epoch():
    images, labels = torch.arange(101).view(101, 1, 1, 1).to(torch.uint8), torch.arange(101)
    shards = [
        MemoryBatches(images, labels, 16, shuffle=True, seed=3, rank=r, world_size=2)
        for r in range(2)
    ]
    drawn = [torch.cat([y for _, y in shard]) for shard in shards]
    assert len(drawn[0]) == len(drawn[1]) == 51 and len(shards[0]) == len(shards[1]) == 4
    assert set(drawn[0].tolist()) | set(drawn[1].tolist()) == set(range(101))
    assert len(set(drawn[0].tolist()) & set(drawn[1].tolist())) <= 1  # the one wrapped index


def test_trainer_runs_on_the_memory_path_are_bit_identical_and_respect_batch_limits(tmp_path):
    """Two ``trainer.deterministic=true`` runs (strong augmentation) log the same metrics;
    ``limit_train_batches`` holds."""
    losses = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        code = run_inprocess(
            "train", *QUICK, f"hydra.run.dir={run_dir}", "augment=strong",
            "trainer.deterministic=true", "trainer.limit_train_batches=5", "logger=csv",
            cwd=tmp_path,
        )  # fmt: skip
        assert code == 0
        metrics = read_metrics(run_dir)
        assert metrics["status"] == "completed"
        rows = (run_dir / "epochs.csv").read_text().splitlines()
        losses.append([row.rsplit(",", 1)[0] for row in rows])  # all but the seconds
    assert losses[0] == losses[1]
    step_logs = (tmp_path / "a" / "epochs.csv").read_text().splitlines()
    assert len(step_logs) == 3  # header + 2 epochs
    for path in (tmp_path / "a" / "checkpoints").glob("epoch*.ckpt"):  # the best epoch's
        ckpt = torch.load(path, weights_only=False)
        assert ckpt["global_step"] == 5 * (ckpt["epoch"] + 1)  # 5 batches an epoch


@pytest.mark.slow  # two full default runs (15 epochs each)
def test_memory_and_dataloader_paths_reach_the_same_digits_accuracy(tmp_path):
    """The default experiment (15 epochs, seed 42) on each path: the shuffles differ, the
    accuracy may not by more than 1 % (2.7 of the 270 test images)."""
    accuracies = {}
    for loader in ("memory", "dataloader"):
        cwd = tmp_path / loader
        cwd.mkdir()
        code = run_inprocess("train", *QUICK[1:], f"data.loader={loader}", "logger=csv", cwd=cwd)
        assert code == 0
        accuracies[loader] = read_metrics(only_run_dir(cwd))["test"]["test/acc"]
    assert min(accuracies.values()) >= 0.97, accuracies
    assert abs(accuracies["memory"] - accuracies["dataloader"]) <= 0.01, accuracies

"""The augment group: per-image levels, batch mixing, training split only, reproducible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlexp.config.data import DigitsConfig
from dlexp.data.augment import AugmentConfig, BatchMix, image_transform
from dlexp.data.base import ImageDataModule
from dlexp.data.digits import DigitsDataModule
from dlexp.module import ClassificationModule

from conftest import NaturalConfig, augment_config, natural_images

LEVELS = ("none", "basic", "standard", "strong")
NUM_CLASSES = 10


augment = augment_config
NaturalImages = natural_images(total=240, test=40)


def natural(aug: AugmentConfig | None, seed: int = 0) -> NaturalImages:
    cfg = NaturalConfig(batch_size=32, val_fraction=0.2, loader="dataloader")
    dm = NaturalImages(cfg, seed, aug)
    dm.setup("fit")
    return dm


def first_batch(dm: ImageDataModule, seed: int):
    torch.manual_seed(seed)
    return next(iter(dm.train_dataloader()))


def all_images(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_keeps_shapes_and_dtypes(level):
    dm = natural(augment(level))
    images, targets = first_batch(dm, 0)
    assert images.shape == (32, 3, 32, 32)
    if level == "strong":  # mixed batches: float images in [0, 1] and soft targets
        assert images.dtype == torch.float32 and images.min() >= 0 and images.max() <= 1
        assert targets.shape == (32, NUM_CLASSES) and targets.dtype == torch.float32
    else:
        assert images.dtype == torch.uint8
        assert targets.shape == (32,) and targets.dtype == torch.long


@pytest.mark.parametrize("level", ["basic", "standard", "strong"])
def test_each_level_changes_training_images(level):
    dm = natural(augment(level))
    torch.manual_seed(0)
    dataset, collate = dm.train_dataloader().dataset, dm.train_dataloader().collate_fn
    samples = [dataset[i] for i in range(64)]
    if level == "strong":
        images = collate(samples)[0]
        original = dm.train_split.images[:64].float() / 255
    else:
        images = torch.stack([s[0] for s in samples])
        original = dm.train_split.images[:64]
    changed = (images != original).flatten(1).any(1)
    assert changed.float().mean() > 0.5


def test_none_serves_the_training_images_unchanged():
    dm = natural(augment("none"))
    images, labels = all_images(dm.train_dataloader())
    assert sorted(images.flatten(1).sum(1).tolist()) == sorted(
        dm.train_split.images.flatten(1).sum(1).tolist()
    )
    assert labels.dtype == torch.long


@pytest.mark.parametrize("level", LEVELS)
def test_validation_and_test_images_are_never_augmented(level):
    dm = natural(augment(level))
    torch.manual_seed(0)
    for loader, split in (
        (dm.val_dataloader(), dm.val_split),
        (dm.test_dataloader(), dm.test_split),
    ):
        images, labels = all_images(loader)
        assert images.dtype == torch.uint8
        assert torch.equal(images, split.images) and torch.equal(labels, split.labels)


@pytest.mark.parametrize("level", ["basic", "standard", "strong"])
def test_augmentation_is_reproducible_under_a_seed(level):
    dm = natural(augment(level))
    a, b, c = first_batch(dm, 7), first_batch(dm, 7), first_batch(dm, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_digits_are_never_flipped():
    """With only the flip on, digits come out as they went in; natural images get mirrored."""
    flip_only = augment("basic", "augment.crop_padding=0")
    digits = DigitsDataModule(DigitsConfig(loader="dataloader"), 0, flip_only)
    digits.setup("fit")
    dataset = digits.train_dataloader().dataset
    torch.manual_seed(0)
    for i in range(50):
        assert torch.equal(dataset[i][0], digits.train_split.images[i])
    assert image_transform(flip_only, 32, flip_ok=False) is None

    dm = natural(flip_only)
    dataset = dm.train_dataloader().dataset
    torch.manual_seed(0)
    outcomes = []
    for i in range(50):
        x, original = dataset[i][0], dm.train_split.images[i]
        assert torch.equal(x, original) or torch.equal(x, original.flip(-1))
        outcomes.append(torch.equal(x, original.flip(-1)))
    assert 10 < sum(outcomes) < 40


def test_mixup_targets_are_convex_combinations_of_neighbours():
    torch.manual_seed(3)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(8)  # consecutive samples have different labels
    mixed, targets = BatchMix(NUM_CLASSES, mixup_alpha=0.4, cutmix_alpha=0.0)(images, labels)
    x = images.float() / 255
    lam = targets[0, 0].item()
    assert 0 <= lam <= 1
    one_hot = F.one_hot(labels, NUM_CLASSES).float()
    assert torch.allclose(targets, lam * one_hot + (1 - lam) * one_hot.roll(1, 0))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(8))


def test_cutmix_targets_weigh_labels_by_pasted_area():
    torch.manual_seed(5)
    images = torch.stack([torch.full((3, 32, 32), i, dtype=torch.uint8) for i in range(8)])
    labels = torch.arange(8)
    mixed, targets = BatchMix(NUM_CLASSES, mixup_alpha=0.0, cutmix_alpha=1.0)(images, labels)
    own = (mixed[0] == 0).float().mean().item()  # share of image 0's own pixels
    assert targets[0, 0].item() == pytest.approx(own, abs=1e-6)
    assert targets[0, 7].item() == pytest.approx(1 - own, abs=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(8))


def test_the_module_trains_on_soft_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    module = ClassificationModule(model, nn.Identity(), 3, lambda p: torch.optim.SGD(p, lr=0.1))
    images = torch.rand(4, 3, 2, 2)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6], [0.9, 0.0, 0.1], [0.2, 0.8, 0.0]])
    with pytest.warns(UserWarning, match="self.log"):
        loss = module.training_step((images, soft), 0)
    assert loss.item() == pytest.approx(F.cross_entropy(model(images), soft).item())
    # training accuracy scores the dominant label of each soft target
    predicted = model(images).argmax(1)
    expected = (predicted == torch.tensor([0, 2, 0, 1])).float().mean()
    assert module.train_metrics["acc"].compute().item() == pytest.approx(expected.item())

"""Datasets: splits, normalization statistics, offline errors."""

from __future__ import annotations

import pytest
import torch

from dlexp.config.data import DigitsConfig, MNISTConfig
from dlexp.data import build_datamodule
from dlexp.errors import InputError


def digits(seed=0, **kw):
    dm = build_datamodule(DigitsConfig(**kw), seed=seed)
    dm.setup("fit")
    return dm


def test_digits_split_is_stratified_deterministic_and_disjoint():
    a, b, c = digits(0), digits(0), digits(1)
    assert (len(a.train_split), len(a.val_split), len(a.test_split)) == (1257, 270, 270)
    assert torch.equal(a.val_split.labels, b.val_split.labels)
    assert torch.equal(a.val_split.images, b.val_split.images)
    assert not torch.equal(a.val_split.images, c.val_split.images)
    for split in (a.train_split, a.val_split, a.test_split):
        share = torch.bincount(split.labels, minlength=10).float() / len(split)
        assert share.min() > 0.08 and share.max() < 0.12  # ~10% per class everywhere
    seen = {tuple(x.flatten().tolist()) for x in a.train_split.images[:, :, ::4, ::4]}
    overlap = sum(tuple(x.flatten().tolist()) in seen for x in a.test_split.images[:, :, ::4, ::4])
    assert overlap < 10  # at most a few duplicate-looking digits in the raw data


def test_digits_are_upsampled_to_image_size():
    dm = digits(image_size=28)
    assert dm.train_split.images.shape[1:] == (1, 28, 28)
    assert dm.train_split.images.dtype == torch.uint8
    assert (dm.in_channels, dm.num_classes, dm.image_size) == (1, 10, 28)


@pytest.mark.parametrize("mode", ["standardize", "minmax", "none"])
def test_normalization_statistics_come_from_the_training_split_only(mode):
    dm = digits(normalize=mode)
    train = dm.train_split.images.double() / 255
    out = dm.normalizer(dm.train_split.images)
    if mode == "standardize":
        assert dm.normalizer.shift.item() == pytest.approx(train.mean().item(), abs=1e-6)
        assert dm.normalizer.scale.item() == pytest.approx(train.std().item(), abs=1e-6)
        assert out.mean().item() == pytest.approx(0, abs=1e-4)
        assert out.std().item() == pytest.approx(1, abs=1e-3)
        everything = (
            torch.cat([dm.train_split.images, dm.val_split.images, dm.test_split.images]).double()
            / 255
        )
        assert dm.normalizer.shift.item() != pytest.approx(everything.mean().item(), abs=1e-7)
    elif mode == "minmax":
        assert out.min().item() == pytest.approx(0) and out.max().item() == pytest.approx(1)
    else:
        assert torch.allclose(out, dm.train_split.images.float() / 255)


def test_missing_mnist_offline_names_the_folder_and_files(tmp_path):
    cfg = MNISTConfig(root=str(tmp_path), download=False)
    dm = build_datamodule(cfg, seed=0)
    with pytest.raises(InputError) as err:
        dm.setup("fit")
    text = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in text
    assert "t10k-labels-idx1-ubyte.gz" in text and "download is off" in text


@pytest.mark.slow
def test_real_mnist_loads_from_the_official_files(mnist_root):
    dm = build_datamodule(MNISTConfig(root=str(mnist_root), download=True), seed=0)
    dm.setup("fit")
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (54000, 6000, 10000)
    assert dm.train_split.images.shape[1:] == (1, 28, 28)

"""New data options, on files the tests write: cifar10/100, svhn, kmnist, imagefolder;
class selection and stratified, seeded subsampling of the training split."""

from __future__ import annotations

import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dlexp.config.data import DigitsConfig
from dlexp.data import build_datamodule
from dlexp.data.digits import DigitsDataModule
from dlexp.errors import ConfigError, InputError

from conftest import QUICK, compose_config, only_run_dir, read_metrics, run_inprocess

# -- writing fake files in the official layouts ----------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]  # fmt: skip


def fake_cifar10(root: Path, per_batch: int = 20) -> dict[str, np.ndarray]:
    """``cifar-10-batches-py`` with five training batches and a test batch of random images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        written[name] = data
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_vis": 3072}, f)
    return written


def fake_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 400), ("test", 100)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "fine_labels": [i % 100 for i in range(n)],
                 "coarse_labels": [i % 20 for i in range(n)]}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)


def fake_svhn(root: Path) -> np.ndarray:
    from scipy.io import savemat

    folder = root / "SVHN"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train_x = None
    for name, n in (("train_32x32.mat", 50), ("test_32x32.mat", 20)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[(i % 10) or 10] for i in range(n)], dtype=np.uint8)  # 0 is stored as 10
        savemat(folder / name, {"X": x, "y": y})
        if name.startswith("train"):
            train_x = x
    return train_x


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_kmnist(root: Path) -> None:
    raw = root / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for prefix, n in (("train", 200), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def write_pngs(root: Path, colours: dict[str, tuple[int, int, int]], count: int, size=(20, 12)):
    from PIL import Image

    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")


def datamodule(*overrides: str, augment: bool = False):
    """``build_datamodule`` on the composed ``data`` node of ``overrides`` (set up); the
    files are not checked up front, so the datamodule's own errors show."""
    cfg = compose_config(*overrides)
    dm = build_datamodule(cfg.data, seed=cfg.seed, augment=cfg.augment if augment else None)
    dm.setup("fit")
    return dm


# -- cifar -------------------------------------------------------------------------------------


def test_cifar10_reads_the_official_batch_layout(tmp_path):
    written = fake_cifar10(tmp_path)
    dm = datamodule("data=cifar10", f"data.root={tmp_path}", "data.verify_md5=false")
    assert (dm.in_channels, dm.image_size, dm.num_classes) == (3, 32, 10)
    assert dm.class_names[:2] == ["airplane", "automobile"] and dm.cfg.flip_ok
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (90, 10, 20)
    # Rows are channel-major 32x32 planes: pixel (c, y, x) of image i is row[c·1024 + y·32 + x].
    test = written["test_batch"]
    assert torch.equal(dm.test_split.images, torch.from_numpy(test).reshape(20, 3, 32, 32))
    assert dm.test_split.images[3, 2, 5, 7].item() == test[3, 2 * 1024 + 5 * 32 + 7]
    assert dm.test_split.labels.tolist() == [i % 10 for i in range(20)]


def test_cifar10_md5_check_rejects_files_that_are_not_the_official_ones(tmp_path):
    fake_cifar10(tmp_path)
    with pytest.raises(InputError, match=r"data_batch_1 is not the official CIFAR10 file.*"
                       r"data\.verify_md5=false"):  # fmt: skip
        datamodule("data=cifar10", f"data.root={tmp_path}")


def test_cifar10_missing_files_offline_name_the_folder_and_the_files(tmp_path):
    with pytest.raises(InputError) as err:
        datamodule("data=cifar10", f"data.root={tmp_path}", "data.download=false")
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "test_batch" in message and "download is off" in message


def test_cifar100_uses_the_fine_labels(tmp_path):
    fake_cifar100(tmp_path)
    dm = datamodule("data=cifar100", f"data.root={tmp_path}", "data.verify_md5=false",
                    "data.val_fraction=0.25")  # fmt: skip
    assert dm.num_classes == 100 and dm.class_names[99] == "c99"
    assert sorted(dm.test_split.labels.tolist()) == list(range(100))


def test_a_run_on_cifar10_gets_its_facts_into_the_model(tmp_path):
    fake_cifar10(tmp_path / "data")
    code = run_inprocess(
        "train", *QUICK, "trainer.max_epochs=1", "data=cifar10", "data.verify_md5=false",
        "augment=standard", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "completed"
    assert metrics["data"] == {"train": 90, "val": 10, "test": 20, "num_classes": 10,
                               "image_size": 32, "in_channels": 3,
                               "class_names": CIFAR10_CLASSES}  # fmt: skip


# -- svhn, kmnist --------------------------------------------------------------------------------


def test_svhn_reads_the_mat_files_and_maps_label_10_to_0(tmp_path):
    x = fake_svhn(tmp_path)
    dm = datamodule("data=svhn", f"data.root={tmp_path}", "data.verify_md5=false",
                    "data.val_fraction=0.2")  # fmt: skip
    assert (dm.in_channels, dm.num_classes, dm.image_size, dm.cfg.flip_ok) == (3, 10, 32, False)
    assert sorted(Counter(dm.test_split.labels.tolist())) == list(range(10))
    # X is height x width x channel x N
    all_train = torch.cat([dm.train_split.images, dm.val_split.images])
    assert all_train.flatten(1).sum(1).sort().values.tolist() == sorted(
        int(x[..., i].astype(np.int64).sum()) for i in range(x.shape[-1])
    )
    img = torch.from_numpy(np.ascontiguousarray(x[..., 0].transpose(2, 0, 1)))
    assert any(torch.equal(img, im) for im in all_train)


def test_kmnist_reads_the_idx_files(tmp_path):
    fake_kmnist(tmp_path)
    dm = datamodule("data=kmnist", f"data.root={tmp_path}", "data.download=false")
    assert (dm.in_channels, dm.num_classes, dm.image_size, dm.cfg.flip_ok) == (1, 10, 28, False)
    assert dm.class_names[:3] == ["o", "ki", "su"] and len(dm.test_split) == 20


def test_kmnist_missing_offline_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"KMNIST not found in .*KMNIST/raw.*download is off"):
        datamodule("data=kmnist", f"data.root={tmp_path}", "data.download=false")


# -- imagefolder ---------------------------------------------------------------------------------

COLOURS = {"blue": (0, 0, 255), "green": (0, 200, 0), "red": (255, 0, 0)}


def test_imagefolder_loads_pngs_at_the_configured_size(tmp_path):
    write_pngs(tmp_path / "photos", COLOURS, count=10)
    dm = datamodule("data=imagefolder", f"data.root={tmp_path / 'photos'}", "data.image_size=16",
                    "data.val_fraction=0.2", "data.test_fraction=0.2")  # fmt: skip
    assert dm.class_names == ["blue", "green", "red"] and dm.num_classes == 3
    assert (dm.in_channels, dm.image_size, dm.cfg.flip_ok) == (3, 16, True)
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (18, 6, 6)
    for split in (dm.train_split, dm.val_split, dm.test_split):
        assert split.images.shape[1:] == (3, 16, 16) and split.images.dtype == torch.uint8
        for image, label in zip(split.images, split.labels, strict=True):
            colour = list(COLOURS.values())[label]
            assert image[:, 8, 8].tolist() == list(colour)  # each image carries its class colour


def test_imagefolder_with_a_separate_test_folder_and_greyscale(tmp_path):
    write_pngs(tmp_path / "train", COLOURS, count=10)
    write_pngs(tmp_path / "test", COLOURS, count=4)
    dm = datamodule("data=imagefolder", f"data.root={tmp_path / 'train'}",
                    f"data.test_root={tmp_path / 'test'}", "data.channels=1",
                    "data.image_size=12", "data.val_fraction=0.1")  # fmt: skip
    assert dm.in_channels == 1 and len(dm.test_split) == 12
    assert len(dm.train_split) + len(dm.val_split) == 30 and len(dm.val_split) == 3


def test_imagefolder_errors_name_the_folder(tmp_path):
    with pytest.raises(InputError, match=r"data\.root=.*no such folder"):
        datamodule("data=imagefolder", f"data.root={tmp_path / 'nowhere'}")
    write_pngs(tmp_path / "train", COLOURS, count=10)
    write_pngs(tmp_path / "test", {"blue": (0, 0, 255)}, count=4)
    with pytest.raises(InputError, match=r"data\.test_root=.*class folders"):
        datamodule("data=imagefolder", f"data.root={tmp_path / 'train'}",
                   f"data.test_root={tmp_path / 'test'}")  # fmt: skip


# -- class selection and subsampling ----------------------------------------------------------


def digits(seed: int = 0, **keys) -> DigitsDataModule:
    node = OmegaConf.merge(OmegaConf.structured(DigitsConfig), {"name": "digits", **keys})
    cfg = OmegaConf.to_object(node)
    dm = DigitsDataModule(cfg, seed)
    dm.setup("fit")
    return dm


def test_train_samples_is_stratified_seeded_and_leaves_val_and_test_alone():
    full = digits()
    a, b, c = (
        digits(0, train_samples=200),
        digits(0, train_samples=200),
        digits(1, train_samples=200),
    )
    assert len(a.train_split) == 200
    assert torch.equal(a.train_split.images, b.train_split.images)  # same seed, same subsample
    assert not torch.equal(a.train_split.labels, c.train_split.labels) or not torch.equal(
        a.train_split.images, c.train_split.images
    )
    counts = Counter(a.train_split.labels.tolist())
    full_counts = Counter(full.train_split.labels.tolist())
    for label, n in full_counts.items():  # class proportions kept (to rounding)
        assert abs(counts[label] - n * 200 / len(full.train_split)) <= 1
    assert torch.equal(a.val_split.images, full.val_split.images)
    assert torch.equal(a.test_split.images, full.test_split.images)
    # a subsample of the training split, not of the whole data
    pool = {tuple(x.flatten().tolist()) for x in full.train_split.images}
    assert all(tuple(x.flatten().tolist()) in pool for x in a.train_split.images)


def test_train_samples_per_class_takes_exactly_that_many_of_each_class():
    dm = digits(3, train_samples_per_class=7)
    assert Counter(dm.train_split.labels.tolist()) == dict.fromkeys(range(10), 7)
    assert torch.equal(
        dm.train_split.images, digits(3, train_samples_per_class=7).train_split.images
    )


def test_too_many_training_samples_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.train_samples_per_class=500: class"):
        digits(0, train_samples_per_class=500)
    with pytest.raises(ConfigError, match=r"data\.train_samples=5000: must be <="):
        digits(0, train_samples=5000)


def test_classes_keeps_the_listed_classes_relabelled_in_order():
    full = digits()
    dm = digits(classes=[7, 3, 5])
    assert dm.num_classes == 3 and dm.class_names == ["7", "3", "5"]
    for split in (dm.train_split, dm.val_split, dm.test_split):
        assert sorted(set(split.labels.tolist())) == [0, 1, 2]
    # an image labelled 0 here was a 7 in the full set (all splits drawn from one seed)
    full_images = torch.cat(
        [full.train_split.images, full.val_split.images, full.test_split.images]
    )
    full_labels = torch.cat(
        [full.train_split.labels, full.val_split.labels, full.test_split.labels]
    )
    index = {tuple(x.flatten().tolist()): int(y) for x, y in zip(full_images, full_labels,
                                                                 strict=True)}  # fmt: skip
    for x, y in zip(dm.train_split.images, dm.train_split.labels, strict=True):
        assert index[tuple(x.flatten().tolist())] == [7, 3, 5][y]
    assert len(dm.train_split) + len(dm.val_split) + len(dm.test_split) == sum(
        int((full_labels == c).sum()) for c in (7, 3, 5)
    )


def test_classes_then_train_samples_compose_for_transfer_experiments():
    dm = digits(classes=[5, 6, 7, 8, 9], train_samples_per_class=10)
    assert Counter(dm.train_split.labels.tolist()) == dict.fromkeys(range(5), 10)
    assert dm.normalizer is not None and dm.num_classes == 5


def test_a_class_index_beyond_the_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.classes=\[1, 12\]: class indices must be < 10"):
        digits(classes=[1, 12])

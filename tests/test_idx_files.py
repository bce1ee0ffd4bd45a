"""MNIST-style datasets read by dlexp from the IDX files (``.gz`` or extracted), in memory:
``data.download=false`` with only the official ``.gz`` files works, through a symlinked or
read-only data root, and nothing is ever written there unless a file has to be downloaded."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dlexp.config.data import DATA_SCHEMAS
from dlexp.data import build_datamodule
from dlexp.errors import InputError

from conftest import QUICK, only_run_dir, read_metrics, run_inprocess

N_TRAIN, N_TEST = 20, 10


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(f">HBB{array.ndim}I", 0, 0x08, array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_idx_set(root: Path, folder: str = "MNIST", gz: bool = True) -> dict[str, np.ndarray]:
    """``<root>/<folder>/raw`` with 20 train and 10 test random 28x28 images (labels i % 10)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        arrays[f"{prefix}-images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels"] = (np.arange(n) % 10).astype(np.uint8)
    for key, array in arrays.items():
        name = f"{key}-idx{array.ndim}-ubyte"
        data = idx_bytes(array)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return arrays


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root`` (followed through links): (is a dir, size, mtime in ns)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.stat()
            seen[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    st = Path(root).stat()
    seen["."] = (True, 0, st.st_mtime_ns)
    return seen


def load(name: str, root: Path, download: bool = False):
    # half of the 20 training images for validation: a stratified split needs 10 (one a class)
    cfg = DATA_SCHEMAS[name](root=str(root), download=download, val_fraction=0.5)
    dm = build_datamodule(cfg, seed=0)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("download", [False, True], ids=["download=false", "download=true"])
def test_gz_files_are_read_in_memory_and_nothing_is_written(tmp_path, download):
    arrays = fake_idx_set(tmp_path)
    before = snapshot(tmp_path)
    dm = load("mnist", tmp_path, download=download)
    assert snapshot(tmp_path) == before  # no extracted copies, no processed/, nothing touched
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (10, 10, 10)
    assert dm.train_split.images.shape[1:] == (1, 28, 28)
    assert dm.train_split.images.dtype == torch.uint8 and dm.test_split.labels.dtype == torch.long
    assert torch.equal(dm.test_split.images[:, 0], torch.from_numpy(arrays["t10k-images"]))
    assert dm.test_split.labels.tolist() == [i % 10 for i in range(N_TEST)]
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert dm.class_names == [f"{i} - {name}" for i, name in enumerate(names)]
    assert dm.num_classes == 10


def test_a_symlinked_data_root_of_symlinked_files(tmp_path):
    """``data.root`` a link to a shared store whose files are links again (conftest's kind)."""
    fake_idx_set(tmp_path / "store")
    (tmp_path / "mirror" / "MNIST" / "raw").mkdir(parents=True)
    for f in (tmp_path / "store" / "MNIST" / "raw").iterdir():
        (tmp_path / "mirror" / "MNIST" / "raw" / f.name).symlink_to(f)
    (tmp_path / "data").symlink_to(tmp_path / "mirror", target_is_directory=True)
    before = snapshot(tmp_path / "data")
    dm = load("mnist", tmp_path / "data")
    assert len(dm.test_split) == N_TEST and snapshot(tmp_path / "data") == before


def test_a_read_only_data_root(tmp_path):
    """Read-only files and folders (root ignores the bits: the snapshot shows no write)."""
    fake_idx_set(tmp_path / "ro")
    paths = sorted((tmp_path / "ro").rglob("*"), key=lambda p: -len(p.parts))
    for path in [*paths, tmp_path / "ro"]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        before = snapshot(tmp_path / "ro")
        assert len(load("mnist", tmp_path / "ro").train_split) == 10
        assert snapshot(tmp_path / "ro") == before
    finally:
        for path in [tmp_path / "ro", *paths]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_extracted_files_without_gz_work_too(tmp_path):
    arrays = fake_idx_set(tmp_path, "FashionMNIST", gz=False)
    dm = load("fashion_mnist", tmp_path)
    assert dm.class_names[:3] == ["T-shirt/top", "Trouser", "Pullover"]
    assert torch.equal(dm.test_split.images[:, 0], torch.from_numpy(arrays["t10k-images"]))


def test_extracted_file_is_read_when_both_are_there(tmp_path):
    """As a torchvision download leaves them: the extracted file beside its archive."""
    fake_idx_set(tmp_path, "KMNIST")
    raw = tmp_path / "KMNIST" / "raw"
    for gz in raw.glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.write_bytes(b"not gzip")  # would fail if it were read
    dm = load("kmnist", tmp_path)
    assert dm.class_names[:3] == ["o", "ki", "su"] and len(dm.test_split) == N_TEST


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bad_magic(path: Path) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[2] = 0x0D  # float32, not unsigned bytes
    path.write_bytes(gzip.compress(bytes(data)))


def _short_payload(path: Path) -> None:
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"<html>404 Not Found</html>")


@pytest.mark.parametrize(
    "damage,message",
    [
        (_truncate, r"cannot read it \(Compressed file ended"),
        (_not_gzip, r"cannot read it \(Not a gzipped file"),
        (_bad_magic, r"magic number 0x00000d03, expected 0x00000803"),
        (_short_payload, r"header says 20 x 28 x 28 = 15680 bytes of data, the file holds 15580"),
    ],
    ids=["truncated gz", "not gzip", "bad magic", "short payload"],
)
def test_a_corrupt_file_is_an_input_error_naming_it(tmp_path, damage, message):
    fake_idx_set(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    damage(bad)
    with pytest.raises(InputError, match=message) as err:
        load("mnist", tmp_path)
    assert str(err.value).startswith(f"{bad}: ")


def test_labels_and_images_that_disagree_are_an_input_error(tmp_path):
    fake_idx_set(tmp_path, gz=False)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.arange(9) % 10))
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte: 9 labels for the 10 images"):
        load("mnist", tmp_path)
    labels.write_bytes(idx_bytes(np.full(10, 12)))
    with pytest.raises(InputError, match=r"label 12 is not one of the 10 MNIST classes"):
        load("mnist", tmp_path)


def test_missing_files_offline_name_folder_and_files_and_write_nothing(tmp_path):
    fake_idx_set(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        load("mnist", tmp_path)
    assert str(err.value) == (
        f"data.root={tmp_path}: MNIST not found in {tmp_path / 'MNIST' / 'raw'} (expected "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz, or the same without .gz) and download is off "
        "(data.download=false)"
    )
    assert snapshot(tmp_path) == before


def test_dlexp_train_on_gz_files_with_download_off(tmp_path):
    fake_idx_set(tmp_path / "data")
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    before = snapshot(tmp_path / "data")
    code = run_inprocess(
        "train", *QUICK, "data=mnist", f"data.root={tmp_path / 'link'}", "data.download=false",
        "data.val_fraction=0.5", "trainer.max_epochs=1", "data.batch_size=8", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "completed"
    assert {k: metrics["data"][k] for k in ("train", "val", "test", "image_size")} == {
        "train": 10, "val": 10, "test": 10, "image_size": 28,
    }  # fmt: skip
    assert metrics["data"]["class_names"][0] == "0 - zero"
    assert snapshot(tmp_path / "data") == before


@pytest.mark.slow
def test_the_real_mnist_from_dlexp_data(tmp_path):
    """``DLEXP_DATA``: a data root with the official ``MNIST/raw/*.gz`` (read-only is fine)."""
    root = os.environ.get("DLEXP_DATA")
    if not root:
        pytest.skip("DLEXP_DATA is not set (a data root holding MNIST/raw/*.gz)")
    before = snapshot(Path(root) / "MNIST")
    raw = build_datamodule(DATA_SCHEMAS["mnist"](root=root, download=False), seed=0).load()
    assert raw.train.images.shape == (60000, 1, 28, 28) and raw.test.images.shape[0] == 10000
    assert raw.train.labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]  # the official order
    assert torch.bincount(raw.test.labels).tolist()[:2] == [980, 1135]
    assert snapshot(Path(root) / "MNIST") == before


def test_missing_files_with_download_on_go_through_torchvision(tmp_path, monkeypatch):
    """torchvision downloads (and extracts) what is missing; dlexp then reads the files."""
    import torchvision.datasets

    from dlexp.data.torchvision_sets import MNISTDataModule

    calls = []

    class FakeDownloader:
        classes = torchvision.datasets.MNIST.classes

        def __init__(self, root, train, download):
            calls.append((root, train, download))
            if not (Path(root) / "MNIST").exists():
                fake_idx_set(Path(root), gz=False)

    monkeypatch.setattr(MNISTDataModule, "dataset_cls", lambda self: FakeDownloader)
    dm = load("mnist", tmp_path, download=True)
    assert calls and all(c == (str(tmp_path), c[1], True) for c in calls)
    assert len(dm.test_split) == N_TEST and dm.class_names[0] == "0 - zero"
    calls.clear()
    load("mnist", tmp_path, download=True)
    assert calls == []  # the files are there now: torchvision is not asked again


def test_the_jobs_of_a_sweep_load_unchanged_files_once(tmp_path, monkeypatch):
    """Two data modules on the same files (a sweep's jobs) read them once; a changed file,
    another root or another dataset is read again."""
    from dlexp.data.torchvision_sets import TorchvisionDataModule

    reads = []
    original = TorchvisionDataModule.load
    monkeypatch.setattr(
        TorchvisionDataModule, "load", lambda self: reads.append(self.cfg.root) or original(self)
    )
    arrays = fake_idx_set(tmp_path / "a")
    first, second = load("mnist", tmp_path / "a"), load("mnist", tmp_path / "a")
    assert reads == [str(tmp_path / "a")]
    assert torch.equal(first.train_split.images, second.train_split.images)
    # a file rewritten in place (same size, new content): read again
    images = tmp_path / "a" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    changed = arrays["train-images"].copy()
    changed[0] = 255 - changed[0]
    images.write_bytes(gzip.compress(idx_bytes(changed)))
    os.utime(images, ns=(images.stat().st_atime_ns, images.stat().st_mtime_ns + 10**9))
    third = load("mnist", tmp_path / "a")
    assert len(reads) == 2
    seen = [torch.cat([dm.train_split.images, dm.val_split.images]) for dm in (first, third)]
    assert not torch.equal(*seen)
    fake_idx_set(tmp_path / "b")
    load("mnist", tmp_path / "b")
    assert len(reads) == 3

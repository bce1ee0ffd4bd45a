"""The torch-free check of a dataset's files (``dlexp.data_files``) for the config check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlexp import data_files
from dlexp.data_files import LAYOUTS, check_data_files, missing_text
from dlexp.errors import ConfigError

from conftest import REPO, run_python

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")  # fmt: skip


def put_files(root: Path, name: str, files=None) -> Path:
    """Empty files standing for dataset ``name``'s (the check looks only at names)."""
    folder = root / LAYOUTS[name].folder
    folder.mkdir(parents=True, exist_ok=True)
    for file in LAYOUTS[name].files if files is None else files:
        (folder / file).touch()
    return folder


def tree(root: Path) -> dict[str, int]:
    paths = [root, *root.rglob("*")] if root.exists() else []
    return {str(p): p.stat().st_mtime_ns for p in paths}


def test_importing_it_imports_no_torch():
    light = "{'numpy', 'omegaconf', 'hydra'}"
    code = f"import sys, dlexp.data_files\nprint(sorted({light} & set(sys.modules)))"
    done, heavy = run_python(code, cwd=REPO)
    assert (done.returncode, done.stdout.strip(), heavy) == (0, "[]", []), done.stderr


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_files_present_pass_and_nothing_is_written(tmp_path, name):
    put_files(tmp_path, name)
    before = tree(tmp_path)
    for download in (False, True):
        check_data_files(name, str(tmp_path), download)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist"])
def test_idx_files_may_be_extracted(tmp_path, name):
    put_files(tmp_path, name, [*IDX[:2], "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"])
    check_data_files(name, str(tmp_path), False)


MISSING_OFFLINE = {
    "mnist": "MNIST not found in {root}/MNIST/raw (expected train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, or the "
    "same without .gz) and download is off (data.download=false)",
    "fashion_mnist": "FashionMNIST not found in {root}/FashionMNIST/raw (expected "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz, or the same without .gz) and download is off",
    "kmnist": "KMNIST not found in {root}/KMNIST/raw (expected train-images-idx3-ubyte.gz",
    "cifar10": "CIFAR10 not found in {root}/cifar-10-batches-py (expected data_batch_1, "
    "data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta) and "
    "download is off (data.download=false)",
    "cifar100": "CIFAR100 not found in {root}/cifar-100-python (expected train, test, meta) and "
    "download is off",
    "svhn": "SVHN not found in {root}/SVHN (expected train_32x32.mat, test_32x32.mat) and "
    "download is off",
}


@pytest.mark.parametrize("name", sorted(MISSING_OFFLINE))
def test_missing_files_with_download_off_name_the_folder_and_the_files(tmp_path, name):
    with pytest.raises(ConfigError) as err:
        check_data_files(name, str(tmp_path), False)
    assert err.value.key == "data.root" and err.value.value == str(tmp_path)
    assert str(err.value).startswith(f"data.root={tmp_path}: ")
    assert MISSING_OFFLINE[name].format(root=tmp_path) in str(err.value)
    assert not any(tmp_path.iterdir())  # looked, created nothing


def test_one_missing_file_is_enough(tmp_path):
    folder = put_files(tmp_path, "cifar10")
    (folder / "batches.meta").unlink()
    with pytest.raises(ConfigError, match="CIFAR10 not found"):
        check_data_files("cifar10", str(tmp_path), False)


def test_missing_with_download_on_passes_where_the_root_can_be_created(tmp_path):
    for root in (tmp_path, tmp_path / "not" / "yet"):
        check_data_files("mnist", str(root), True)
    assert not any(tmp_path.iterdir())  # checked without creating anything


def test_missing_with_download_on_and_a_root_that_cannot_be_created(tmp_path):
    (tmp_path / "a_file").write_text("")
    root = tmp_path / "a_file" / "data"
    with pytest.raises(ConfigError) as err:
        check_data_files("svhn", str(root), True)
    assert str(err.value) == (
        f"data.root={root}: SVHN not found in {root / 'SVHN'} (expected train_32x32.mat, "
        f"test_32x32.mat) and cannot be downloaded there ({tmp_path / 'a_file'} is not a folder)"
    )
    (tmp_path / "dangling").symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"dangling is a broken symbolic link"):
        check_data_files("cifar100", str(tmp_path / "dangling"), True)


def test_missing_with_download_on_and_a_read_only_root(tmp_path, monkeypatch):
    """A read-only root (the tests run as root, so the file system is asked through a stub)."""
    asked = []

    def access(path, mode):
        asked.append((Path(path), mode))
        return False

    monkeypatch.setattr(data_files.os, "access", access)
    with pytest.raises(ConfigError, match=rf"cannot be downloaded there \({tmp_path} is not "
                       r"writable\)"):  # fmt: skip
        check_data_files("mnist", str(tmp_path / "new"), True)
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]
    put_files(tmp_path / "new", "mnist")
    check_data_files("mnist", str(tmp_path / "new"), True)  # present: nothing to download


def test_a_symlinked_root(tmp_path):
    put_files(tmp_path / "store", "kmnist")
    (tmp_path / "data").symlink_to(tmp_path / "store", target_is_directory=True)
    check_data_files("kmnist", str(tmp_path / "data"), False)


def test_root_none_is_required_for_file_datasets():
    with pytest.raises(ConfigError, match=r"data.root=None: is required by data=mnist"):
        check_data_files("mnist", None, True)


def test_imagefolder_needs_a_folder_of_class_folders(tmp_path):
    with pytest.raises(ConfigError, match=r"data.root=.*nowhere: no such folder \(expected "
                       r"<class name>/<images>\)"):  # fmt: skip
        check_data_files("imagefolder", str(tmp_path / "nowhere"), False)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").touch()
    with pytest.raises(ConfigError, match=r"flat: has no class sub-folders"):
        check_data_files("imagefolder", str(tmp_path / "flat"), True)
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "dog").mkdir()
    check_data_files("imagefolder", str(tmp_path / "photos"), False)
    with pytest.raises(ConfigError, match=r"^data.test_root=.*flat: has no class sub-folders"):
        check_data_files("imagefolder", str(tmp_path / "photos"), False,
                         test_root=str(tmp_path / "flat"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"data.root=None: is required by data=imagefolder"):
        check_data_files("imagefolder", None, False)


def test_digits_and_datasets_it_does_not_know_need_nothing(tmp_path):
    check_data_files("digits", None, False)
    check_data_files("digits", str(tmp_path / "nowhere"), False)
    check_data_files("my_own_dataset", str(tmp_path / "nowhere"), False)


def test_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    put_files(tmp_path / "datasets", "mnist")
    check_data_files("mnist", "~/datasets", False)
    with pytest.raises(ConfigError) as err:
        check_data_files("svhn", "~/datasets", False)
    assert str(err.value).startswith(f"data.root=~/datasets: SVHN not found in {tmp_path}/")


# -- the one list of files: torchvision agrees, the datamodules read it from here ------------


def test_the_layouts_are_torchvisions():
    import torchvision.datasets as tv

    for name, cls in (("mnist", tv.MNIST), ("fashion_mnist", tv.FashionMNIST),
                      ("kmnist", tv.KMNIST)):  # fmt: skip
        assert LAYOUTS[name].folder == f"{cls.__name__}/raw" and LAYOUTS[name].gz_optional
        assert LAYOUTS[name].files == tuple(file for file, _ in cls.resources)
    for name, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        assert LAYOUTS[name].folder == cls.base_folder
        listed = [file for file, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        assert LAYOUTS[name].files == tuple(listed)
    assert LAYOUTS["svhn"].files == tuple(tv.SVHN.split_list[s][1] for s in ("train", "test"))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_the_datamodules_take_their_files_from_here(tmp_path, name):
    from dlexp.config.data import DATA_SCHEMAS
    from dlexp.data.registry import DATASETS

    dm = DATASETS[name](DATA_SCHEMAS[name](root=str(tmp_path), download=False), 0)
    assert dm.expected_files is LAYOUTS[name].files
    assert dm.raw_folder() == tmp_path / LAYOUTS[name].folder
    why = "download is off (data.download=false)"
    assert (
        str(dm.missing_error(why)) == f"data.root={tmp_path}: {missing_text(name, tmp_path, why)}"
    )

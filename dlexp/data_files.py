"""Where each dataset's files lie under ``data.root``, and whether they can be had.

The one list of every dataset's file names and folders: the datamodules in
:mod:`dlexp.data` read them from here. Importing this module imports nothing but the
standard library and :mod:`dlexp.errors` (no torch, no Lightning), so the up-front config
check can call :func:`check_data_files` before anything heavy is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dlexp.errors import ConfigError

__all__ = [
    "LAYOUTS",
    "DataLayout",
    "check_data_files",
    "check_image_folder",
    "data_folder",
    "find_file",
    "missing_files",
    "missing_text",
    "not_writable",
]


@dataclass(frozen=True)
class DataLayout:
    """A dataset's official files: ``<data.root>/<folder>/<files>``.

    ``title``: the name messages use (torchvision's class name). ``gz_optional``: each
    ``.gz`` file may lie there extracted instead (the same name without ``.gz``).
    """

    title: str
    folder: str
    files: tuple[str, ...]
    gz_optional: bool = False


IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

LAYOUTS: dict[str, DataLayout] = {
    "mnist": DataLayout("MNIST", "MNIST/raw", IDX_FILES, gz_optional=True),
    "fashion_mnist": DataLayout("FashionMNIST", "FashionMNIST/raw", IDX_FILES, gz_optional=True),
    "kmnist": DataLayout("KMNIST", "KMNIST/raw", IDX_FILES, gz_optional=True),
    "cifar10": DataLayout(
        "CIFAR10",
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
    ),
    "cifar100": DataLayout("CIFAR100", "cifar-100-python", ("train", "test", "meta")),
    "svhn": DataLayout("SVHN", "SVHN", ("train_32x32.mat", "test_32x32.mat")),
}

IMAGE_FOLDER_LAYOUT = "expected <class name>/<images>"


def data_folder(name: str, root: str | os.PathLike) -> Path:
    """The folder under ``root`` (``~`` expanded) that holds dataset ``name``'s files."""
    return Path(root).expanduser() / LAYOUTS[name].folder


def find_file(folder: Path, file: str, gz_optional: bool) -> Path | None:
    """``folder/file``, or where ``gz_optional`` its extracted form, whichever is there.

    The extracted file is preferred (it is what a torchvision download leaves beside the
    archive, and reads without decompressing).
    """
    candidates = [folder / file]
    if gz_optional and file.endswith(".gz"):
        candidates.insert(0, folder / file[: -len(".gz")])
    return next((path for path in candidates if path.is_file()), None)


def missing_files(name: str, root: str | os.PathLike) -> list[str]:
    """The files of dataset ``name`` that are not under ``root`` (in either form)."""
    layout = LAYOUTS[name]
    folder = data_folder(name, root)
    return [f for f in layout.files if find_file(folder, f, layout.gz_optional) is None]


def expected_text(name: str) -> str:
    """The files of ``name`` as the messages list them."""
    layout = LAYOUTS[name]
    text = ", ".join(layout.files)
    return f"{text}, or the same without .gz" if layout.gz_optional else text


def missing_text(name: str, root: str | os.PathLike, why: str) -> str:
    """``<Title> not found in <folder> (expected <files>) and <why>``: what a message says
    after ``data.root=<root>:`` when the files are not there."""
    return (
        f"{LAYOUTS[name].title} not found in {data_folder(name, root)} "
        f"(expected {expected_text(name)}) and {why}"
    )


def check_data_files(
    name: str, root: str | None, download: bool, *, test_root: str | None = None
) -> None:
    """Raise :class:`ConfigError` (key ``data.root``) when dataset ``name`` cannot be had.

    That is: its files are not under ``root`` and ``download`` is off, or they are not
    there, ``download`` is on and ``root`` cannot be created or written (a download writes
    there). ``imagefolder``: ``root`` (and ``test_root``, if given) must be folders with
    class sub-folders. ``digits`` ships with scikit-learn: nothing to check. A name without
    a known layout (a dataset registered elsewhere) is not checked here. Reads only: nothing
    is created, written or touched.
    """
    if name == "imagefolder":
        classes = check_image_folder("data.root", root)
        if test_root is not None and check_image_folder("data.test_root", test_root) != classes:
            raise ConfigError(
                "data.test_root",
                test_root,
                f"must have the class folders of data.root ({', '.join(classes)})",
            )
        return
    if name not in LAYOUTS:
        return
    if root is None:
        raise ConfigError("data.root", root, f"is required by data={name}")
    if not missing_files(name, root):
        return
    if not download:
        raise ConfigError(
            "data.root", root, missing_text(name, root, "download is off (data.download=false)")
        )
    reason = not_writable(data_folder(name, root))
    if reason:
        raise ConfigError(
            "data.root",
            root,
            missing_text(name, root, f"cannot be downloaded there ({reason})"),
        )


def check_image_folder(key: str, root: str | None) -> list[str]:
    """``root``'s class folders (:func:`dlexp.images.class_folders`); raise
    :class:`ConfigError` unless there are two or more (one class is nothing to learn)."""
    from dlexp.images import class_folders

    if root is None:
        raise ConfigError(key, root, f"is required by data=imagefolder ({IMAGE_FOLDER_LAYOUT})")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise ConfigError(key, root, f"no such folder ({IMAGE_FOLDER_LAYOUT})")
    try:
        classes = class_folders(folder)
    except OSError as exc:
        raise ConfigError(key, root, f"cannot list it ({exc.strerror or exc})") from None
    if not classes:
        raise ConfigError(key, root, f"has no class sub-folders ({IMAGE_FOLDER_LAYOUT})")
    if len(classes) < 2:
        raise ConfigError(
            key,
            root,
            f"has one class folder ({classes[0]}); a classifier needs two or more class "
            f"folders ({IMAGE_FOLDER_LAYOUT}; hidden folders and links to folders do not count)",
        )
    return classes


def not_writable(folder: Path) -> str:
    """Why ``folder`` cannot be created (or written) by this process; ``""`` when it can.

    Asks the file system (``os.access``, which also sees read-only mounts) without writing.
    """
    ancestor = folder.absolute()
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link: nothing can be created through it
            return f"{ancestor} is a broken symbolic link"
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return ""

"""Image files as dlexp reads them, for training (``data=imagefolder``) and ``dlexp predict``.

Which files are read (:func:`find_images`, :func:`class_folders`):

- files whose suffix is one of :data:`IMAGE_SUFFIXES` (any case); other files are ignored;
- names starting with ``.`` (files and folders: ``.DS_Store``, ``.ipynb_checkpoints``) are
  hidden and ignored;
- only regular files are opened: FIFOs, sockets and devices are skipped (a FIFO would block);
- symbolic links to files are read, but every file counts once (by its real path); a file
  that also lies in the tree under its own name counts there, never under a link's class;
- symbolic links to folders are never followed (no loops, nothing outside the tree).

How they are decoded (:func:`decode`): the first frame, turned upright by its EXIF
orientation; 16-bit images (modes ``I;16*`` and ``I``, how PIL reads 16-bit PNG/TIFF) are
scaled to 8 bits by dividing by 257 (65535 becomes 255; ``I`` values beyond 65535 saturate);
float images (``F``) are taken as [0, 1] when all their values lie there, else as 16-bit
values; transparent pixels (``RGBA``, ``LA``, palettes with transparency) are composited onto
black; palette, CMYK, YCbCr and bilevel images are converted by PIL. An image of more than
:data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb), a truncated or unreadable file raises
:class:`ImageError` naming the file. Importing this module imports only the standard library.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default (~ 9459 x 9459): larger is refused
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(Exception):
    """An image file that cannot be read; ``str()`` names the file and the reason."""


def _hidden(name: str) -> bool:
    return name.startswith(".")


def class_folders(root: Path) -> list[str]:
    """The class folders of ``root``: its sub-folders that are neither hidden nor symbolic
    links, sorted. Raises ``OSError`` when ``root`` cannot be listed."""
    with os.scandir(root) as entries:
        return sorted(
            e.name for e in entries if not _hidden(e.name) and e.is_dir(follow_symlinks=False)
        )


def _walk(folder: Path, seen_dirs: set, found: list[tuple[Path, bool, str]]) -> None:
    """Append ``(path, is_link, real path)`` of every image file below ``folder``."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ImageError(f"{folder}: cannot list it ({exc.strerror or exc})") from None
    for entry in entries:
        if _hidden(entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            real = os.path.realpath(entry.path)
            if real not in seen_dirs:  # a bind mount may show one folder twice
                seen_dirs.add(real)
                _walk(Path(entry.path), seen_dirs, found)
            continue
        if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
            continue
        try:
            mode = os.stat(entry.path).st_mode  # through a link: what it points to
        except OSError:  # a broken link
            log.warning("skipping %s: a broken symbolic link", entry.path)
            continue
        if not stat.S_ISREG(mode):
            if not stat.S_ISDIR(mode):  # a link to a folder is just not followed
                log.warning("skipping %s: not a regular file (FIFO, socket or device)", entry.path)
            continue
        found.append((Path(entry.path), entry.is_symlink(), os.path.realpath(entry.path)))


def find_images(folders: list[Path]) -> list[list[Path]]:
    """The image files below each of ``folders`` (sorted), each real file counted once.

    A real file found under its own name wins over links to it; among links only, the
    first (in the order of ``folders``, then by path) wins. Raises :class:`ImageError`.
    """
    seen_dirs = {os.path.realpath(f) for f in folders}
    found = []
    for i, folder in enumerate(folders):
        files: list[tuple[Path, bool, str]] = []
        _walk(folder, seen_dirs, files)
        found += [(i, *f) for f in files]
    owner: dict[str, tuple[int, Path, bool]] = {}
    for i, path, is_link, real in found:
        if real not in owner or (owner[real][2] and not is_link):
            owner[real] = (i, path, is_link)
    dropped = len(found) - len(owner)
    if dropped:
        log.warning("%d image path(s) are links to files already counted: each read once", dropped)
    out: list[list[Path]] = [[] for _ in folders]
    for i, path, _ in sorted(owner.values()):
        out[i].append(path)
    return out


def regular_file(path: Path) -> bool:
    """Whether ``path`` is (or links to) a regular file, without opening it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def decode(path: Path, channels: int) -> np.ndarray:
    """The image at ``path`` as uint8 ``(H, W)`` (``channels=1``) or ``(H, W, 3)`` pixels."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    if not regular_file(path):
        raise ImageError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                pixels = _to_8bit(image, channels, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: refused as a decompression bomb (more than {MAX_IMAGE_PIXELS} pixels: "
            f"{_reason(exc)})"
        ) from None
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError) as exc:
        raise ImageError(f"{path}: not a readable image ({_reason(exc)})") from None
    return pixels


def _to_8bit(image, channels: int, path: Path) -> np.ndarray:
    """``image`` (any PIL mode) as uint8 pixels of ``channels`` channels."""
    import numpy as np
    from PIL import Image

    mode = image.mode
    if mode in SIXTEEN_BIT or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{path}: not a readable image (non-finite pixel values)")
        scale = 255 if mode == "F" and values.min() >= 0 and values.max() <= 1 else 1 / 257
        image = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)  # straight alpha
        over_black = rgba[..., :3] * rgba[..., 3:] / 255
        image = Image.fromarray(np.rint(over_black).astype(np.uint8), "RGB")
    return np.asarray(image.convert("L" if channels == 1 else "RGB"))


def load_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """A uint8 ``(channels, size, size)`` tensor: :func:`decode`, resized so that the shorter
    side is ``size`` (bilinear, antialiased), centre-cropped to a square."""
    import torch

    from dlexp.data.base import resize_shorter

    pixels = torch.from_numpy(decode(path, channels).copy())
    image = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
    return resize_shorter(image, size)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__

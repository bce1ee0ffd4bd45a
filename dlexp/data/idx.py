"""IDX files (MNIST and its kin), read into memory from the ``.gz`` or the extracted file.

An IDX file is a big-endian header, ``0x00 0x00 <type> <ndim>`` then ``ndim`` uint32 sizes,
followed by the payload. MNIST-style sets use type ``0x08`` (unsigned bytes): images are
``N x rows x cols``, labels ``N``. Nothing is written anywhere: a ``.gz`` is decompressed in
memory, so a read-only data root works.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from dlexp.errors import InputError

UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of ``ndim`` dimensions stored in IDX file ``path`` (``.gz`` or not).

    A file that is truncated, not gzip where it says so, or whose header does not describe
    a uint8 array of ``ndim`` dimensions matching its size is an :class:`InputError`
    naming the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # truncated or not a gzip file
        raise InputError(f"{path}: cannot read it ({_reason(exc)})") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(
            f"{path}: not an IDX file ({len(data)} bytes, shorter than its {header}-byte header)"
        )
    zero, kind, dims = struct.unpack_from(">HBB", data)
    if zero != 0 or kind != UBYTE or dims != ndim:
        raise InputError(
            f"{path}: not an IDX file of {ndim}-d unsigned bytes (magic number "
            f"0x{int.from_bytes(data[:4], 'big'):08x}, expected 0x{UBYTE << 8 | ndim:08x})"
        )
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    size = math.prod(shape)
    if len(data) - header != size:
        raise InputError(
            f"{path}: truncated or corrupt IDX file (header says {' x '.join(map(str, shape))} "
            f"= {size} bytes of data, the file holds {len(data) - header})"
        )
    # A copy: the bytes object is read-only, torch wants writable memory.
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(shape).copy()


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (``N x rows x cols``) and labels (``N``) of one split; counts must agree."""
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise InputError(
            f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}"
        )
    return images, labels


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

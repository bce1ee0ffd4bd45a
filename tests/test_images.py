"""Images are read as they are (dlexp.images): by the same rules for ``data=imagefolder`` and
``dlexp predict``: 16-bit scaled, alpha and palettes converted, links counted once, special
files skipped, bombs and broken files refused naming the file."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlexp.images import MAX_IMAGE_PIXELS, class_folders, decode, find_images
from dlexp.predict import image_files

from conftest import QUICK, read_metrics, run_inprocess

DARK, BRIGHT = 10_000, 50_000  # 16-bit values: 39 and 195 once scaled (clipping made both 255)


def write_16bit(path: Path, value: int, size: int = 8, seed: int = 0) -> None:
    """A 16-bit grayscale PNG (PIL mode I;16) around ``value``."""
    noise = np.random.default_rng(seed).integers(-300, 300, (size, size))
    Image.fromarray(np.clip(value + noise, 0, 65535).astype(np.uint16)).save(path)


def sixteen_bit_folder(root: Path, per_class: int = 10) -> Path:
    for name, value in (("bright", BRIGHT), ("dark", DARK)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            write_16bit(root / name / f"{i}.png", value, seed=i)
    return root


def png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that claims ``width`` x ``height`` pixels (what a decompression bomb does)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


IMAGE_RUN = [
    *QUICK,
    "logger=none",
    "~callbacks.lr_monitor",
    "trainer.num_sanity_val_steps=0",
    "trainer.max_epochs=12",
    "data=imagefolder",
    "data.image_size=8",
    "data.channels=1",
    "data.batch_size=8",
    "model=mlp",
    "model.hidden_sizes=[16]",
    "optimizer.lr=0.01",
]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run trained on 16-bit PNGs (``bright``/``dark``) and its image folder."""
    tmp = tmp_path_factory.mktemp("images")
    root = sixteen_bit_folder(tmp / "photos")
    run_dir = tmp / "run"
    code = run_inprocess("train", *IMAGE_RUN, f"data.root={root}", f"hydra.run.dir={run_dir}",
                         cwd=tmp)  # fmt: skip
    assert code == 0
    return run_dir, root


def test_modes_are_converted_16_bit_scaled_by_257_not_clipped(tmp_path):
    ramp = np.array([[0, 257, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(ramp).save(tmp_path / "i16.png")
    Image.fromarray(ramp.astype(np.int32), "I").save(tmp_path / "i32.tif")
    Image.fromarray(np.array([[0, 0.5, 1, 1]], dtype=np.float32), "F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "i16.png").mode == "I;16"
    for name in ("i16.png", "i32.tif"):
        assert decode(tmp_path / name, 1).tolist() == [[0, 1, 100, 255]]
        assert decode(tmp_path / name, 3)[0, 2].tolist() == [100, 100, 100]
    assert decode(tmp_path / "f.tif", 1).tolist() == [[0, 128, 255, 255]]
    # transparency composited onto black; palette, CMYK converted
    Image.new("RGBA", (2, 2), (200, 100, 50, 128)).save(tmp_path / "rgba.png")
    Image.new("LA", (2, 2), (200, 0)).save(tmp_path / "la.png")
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.save(tmp_path / "p.png")
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert decode(tmp_path / "rgba.png", 3)[0, 0].tolist() == [100, 50, 25]
    assert decode(tmp_path / "la.png", 1)[0, 0] == 0
    assert decode(tmp_path / "p.png", 3)[0, 0].tolist() == [10, 20, 30]
    red = decode(tmp_path / "cmyk.jpg", 3)[0, 0].tolist()
    assert red[0] > 240 and max(red[1:]) < 15


def test_16_bit_pngs_train_and_predict_with_their_true_values(image_run, tmp_path, capsys):
    from dlexp.data import build_datamodule
    from dlexp.images import load_image
    from dlexp.run_config import saved_config

    run_dir, root = image_run
    dm = build_datamodule(saved_config(run_dir, [], allowed=(), command="eval").data, seed=0)
    dm.setup("fit")
    centre = {0: round(BRIGHT / 257), 1: round(DARK / 257)}  # class 0: bright (sorted names)
    for image, label in zip(dm.train_split.images, dm.train_split.labels, strict=True):
        assert abs(image.float().mean().item() - centre[int(label)]) < 2
    first = root / "dark" / "0.png"  # predict reads it as training did
    assert torch.equal(load_image(first, 1, 8)[0], torch.from_numpy(decode(first, 1).copy()))
    assert read_metrics(run_dir)["test"]["test/acc"] == 1.0
    out = tmp_path / "p.csv"
    code = run_inprocess("predict", f"ckpt={run_dir}", f"inputs={root}", f"out={out}", cwd=tmp_path)
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20
    assert all(r["class_1"] == Path(r["file"]).parent.name for r in rows)


def test_links_count_each_file_once_and_never_cross_classes(tmp_path):
    root = tmp_path / "photos"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            write_16bit(root / name / f"{i}.png", DARK, seed=i)
    outside = tmp_path / "outside.png"
    write_16bit(outside, BRIGHT)
    (root / "a" / "loop").symlink_to(root)  # a loop: 8 images became hundreds
    (root / "b" / "loop").symlink_to(root / "b")
    (root / "b" / "from_a.png").symlink_to(root / "a" / "0.png")  # a's file stays in a
    (root / "aa_link_to_b.png").symlink_to(root / "b" / "1.png")
    (root / "a" / "ext1.png").symlink_to(outside)  # two links to one file: read once, first
    (root / "b" / "ext2.png").symlink_to(outside)
    (root / "c_alias").symlink_to(root / "a")  # a link to a folder is no class
    (root / ".cache").mkdir()
    write_16bit(root / ".cache" / "x.png", DARK)
    write_16bit(root / "a" / ".hidden.png", DARK)
    (root / "a" / "notes.txt").write_text("not an image")
    assert class_folders(root) == ["a", "b"]
    a, b = find_images([root / "a", root / "b"])
    assert [p.name for p in a] == ["0.png", "1.png", "2.png", "3.png", "ext1.png"]
    assert [p.name for p in b] == ["0.png", "1.png", "2.png", "3.png"]
    # predict walks a folder by the same rules (no class folders needed)
    assert image_files(root / "a") == a
    assert sorted(image_files(root)) == sorted(a + b)
    code = run_inprocess("train", *IMAGE_RUN, "trainer.max_epochs=1", f"data.root={root}",
                         "data.val_fraction=0.2", "data.test_fraction=0.2",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert code == 0
    data = read_metrics(tmp_path / "run")["data"]
    assert data["train"] + data["val"] + data["test"] == 9
    assert data["class_names"] == ["a", "b"]


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) when the block takes longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: something opened a FIFO?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_fifos_and_sockets_are_skipped_never_opened(image_run, tmp_path, capsys):
    root = sixteen_bit_folder(tmp_path / "photos", per_class=5)
    os.mkfifo(root / "dark" / "pipe.png")  # opening it would block forever
    server = socket.socket(socket.AF_UNIX)
    cwd = Path.cwd()
    os.chdir(root / "bright")  # a relative name: AF_UNIX paths are short
    try:
        server.bind("sock.png")
    finally:
        os.chdir(cwd)
    trained, _ = image_run
    with server, deadline(60):
        bright, dark = find_images([root / "bright", root / "dark"])
        assert (len(bright), len(dark)) == (5, 5)
        code = run_inprocess("train", *IMAGE_RUN, "trainer.max_epochs=1", f"data.root={root}",
                             "data.val_fraction=0.2", "data.test_fraction=0.2",
                             f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
        assert code == 0
        assert read_metrics(tmp_path / "run")["data"]["train"] == 6
        out = tmp_path / "p.csv"
        code = run_inprocess("predict", f"ckpt={trained}", f"inputs={root}", f"out={out}",
                             cwd=tmp_path)  # fmt: skip
        assert code == 0 and len(list(csv.DictReader(out.open()))) == 10
        capsys.readouterr()
        for special in (root / "dark" / "pipe.png", root / "bright" / "sock.png"):
            code = run_inprocess("predict", f"ckpt={trained}", f"inputs={special}", cwd=tmp_path)
            assert code == 2 and "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: png_header(p, 20_000, 20_000), id="bomb"),
        pytest.param(lambda p: png_header(p, 10_000, 10_000), id="bomb-in-the-warning-range"),
        pytest.param(lambda p: p.write_bytes(TRUNCATED), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"GIF89a but not really"), id="unreadable"),
    ],
)
def test_a_bomb_or_broken_image_is_exit_2_naming_the_file_in_train_and_predict(
    make, image_run, tmp_path, capsys
):
    assert MAX_IMAGE_PIXELS < 10_000 * 10_000
    root = sixteen_bit_folder(tmp_path / "photos", per_class=4)
    bad = root / "dark" / "zz_bad.png"
    make(bad)
    run_dir = tmp_path / "run"
    code = run_inprocess("train", *IMAGE_RUN, f"data.root={root}", f"hydra.run.dir={run_dir}",
                         cwd=tmp_path)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0], err
    assert not run_dir.exists()  # refused before training: nothing left
    trained, _ = image_run
    for inputs in (bad, root):  # the file itself, or a folder holding it
        code = run_inprocess("predict", f"ckpt={trained}", f"inputs={inputs}",
                             f"out={tmp_path / 'p.csv'}", cwd=tmp_path)  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and str(bad) in err[0], err
        assert "Traceback" not in err[0] and not (tmp_path / "p.csv").exists()


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 65535, (32, 32)).astype(np.uint16)
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


TRUNCATED = _truncated_png()

"""``dlexp predict ckpt=<run dir or .ckpt> inputs=<image or folder> [topk=5] [out=<csv>]``.

Each image is found and decoded by the rules training reads an image folder by
(:mod:`dlexp.images`), with the run's channel count (gray or RGB), resized and centre-cropped
to the run's image size like the training images (bilinear, antialiased) and normalized by
the checkpoint's own input normalizer; the top-k classes and their probabilities are printed
as a table and written as CSV (default: ``predictions.csv`` in the run directory).
"""

from __future__ import annotations

import csv
import io
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from dlexp.config import Config
from dlexp.data_files import not_writable
from dlexp.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from dlexp.images import IMAGE_SUFFIXES, ImageError, find_images, load_image, regular_file
from dlexp.io import atomic_write_text, read_json
from dlexp.run_config import PREDICT_OVERRIDES, resolve_checkpoint, run_dir_of, saved_config
from dlexp.rundir import acquire

if TYPE_CHECKING:
    import torch

USAGE = """usage: dlexp predict ckpt=<run dir|.ckpt> inputs=<image|folder> [topk=5] [out=<csv>]
                     [data.batch_size=N] [model.channels_last=true]

Prints the top-k classes of every image (a folder: all of them, recursively; PNG, JPEG,
BMP, TIFF, WebP, PPM/PGM) and writes them as CSV to the file out (default: predictions.csv
in the run directory). Images are fed in
batches of the run's data.batch_size.
"""
ALLOWED = ("ckpt", "inputs", "topk", "out")


def predict_command(args: list[str]) -> int:
    """Entry point of ``dlexp predict``."""
    from dlexp.cli import key_values

    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_BAD_INPUT
    options = key_values(args, "predict")
    for key in options:
        if key not in ALLOWED and "." not in key:
            raise InputError(
                f"{key}={options[key]}: unknown argument; predict takes {', '.join(ALLOWED)}"
                f" and the overrides {', '.join(PREDICT_OVERRIDES)}"
            )
    overrides = [arg for arg in args if arg.partition("=")[0] not in ALLOWED]
    for key in ("ckpt", "inputs"):
        if key not in options:
            raise InputError(f"{key}: required ({USAGE.splitlines()[0][7:]})")
    topk = _positive_int(options.get("topk", "5"), "topk")
    ckpt = resolve_checkpoint(options["ckpt"], "ckpt")
    run_dir = run_dir_of(ckpt)
    if run_dir is None:
        raise InputError(
            f"ckpt={ckpt}: no config.yaml beside it (predict needs the run's directory)"
        )
    files = image_files(Path(options["inputs"]).expanduser())
    out = output_path(options.get("out"), run_dir)
    cfg = saved_config(run_dir, overrides, allowed=PREDICT_OVERRIDES, command="predict")
    writes_run = out.absolute().is_relative_to(run_dir.absolute())  # one writer per run dir
    lock = acquire(run_dir, f"out={out} (in the run dir {run_dir})") if writes_run else None
    with lock or nullcontext():
        from dlexp.checkpoints import lightning_state_dict, safe_load  # torch: after the checks

        state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
        rows = predict(cfg, run_dir, ckpt, state, files, topk)
        atomic_write_text(out, to_csv(rows, topk))
    _print_table(rows, ckpt, Path(options["inputs"]).expanduser())
    print(f"wrote {out}")
    return EXIT_OK


def predict(
    cfg: Config, run_dir: Path, ckpt: Path, state: dict, files: list[Path], topk: int
) -> list[dict]:
    """Top-``topk`` classes of each image: ``[{"file", "classes", "probs"}, ...]``.

    ``state`` is the checkpoint's module state dict; the run's config (``cfg``) and
    ``metrics.json`` give the architecture, image size, channels and class names.
    """
    import torch

    from dlexp.checkpoints import restore_module

    facts = _data_facts(run_dir)
    module = restore_module(
        cfg.model,
        state,
        in_channels=facts["in_channels"],
        num_classes=facts["num_classes"],
        image_size=facts["image_size"],
        key="ckpt",
        shown=str(ckpt),
    )
    names = facts.get("class_names") or [str(i) for i in range(facts["num_classes"])]
    k = min(topk, facts["num_classes"])
    rows = []
    batch = cfg.data.batch_size
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        images = torch.stack(
            [_read_image(f, facts["in_channels"], facts["image_size"]) for f in chunk]
        )
        with torch.no_grad():
            probs = torch.softmax(module(images), dim=1)
        top = probs.topk(k, dim=1)
        for f, p, i in zip(chunk, top.values.tolist(), top.indices.tolist(), strict=True):
            rows.append({"file": str(f), "classes": [names[j] for j in i], "probs": p})
    return rows


def image_files(inputs: Path) -> list[Path]:
    """``inputs`` itself, or every image below the folder ``inputs`` (sorted), found by the
    rules training reads an image folder by (:mod:`dlexp.images`)."""
    if inputs.is_dir():
        try:
            files = find_images([inputs])[0]
        except ImageError as exc:
            raise InputError(f"inputs={inputs}: {exc}") from None
        if not files:
            raise InputError(
                f"inputs={inputs}: no images in this folder (files ending in "
                f"{', '.join(IMAGE_SUFFIXES)}; hidden files and links to folders are skipped)"
            )
        return files
    if not inputs.exists():
        raise InputError(f"inputs={inputs}: no such file or directory")
    if not regular_file(inputs):
        raise InputError(f"inputs={inputs}: not a regular file (a FIFO, socket or device)")
    return [inputs]


def _read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    try:
        return load_image(path, channels, size)
    except ImageError as exc:
        raise InputError(f"inputs={exc}") from None


def output_path(value: str | None, run_dir: Path) -> Path:
    """Where the CSV goes: ``out`` (a file path) or ``predictions.csv`` in the run dir.

    Checked before any work: an existing folder is refused (``out`` names the file), and so
    is a place this process cannot write (a read-only run dir, say).
    """
    out = Path(value).expanduser() if value else run_dir / "predictions.csv"
    shown = f"out={value}" if value else f"{out} (the default out)"
    if out.is_dir():
        raise InputError(
            f"{shown}: is a folder; out names the CSV file to write "
            f"(e.g. out={out / 'predictions.csv'})"
        )
    if out.exists() and not out.is_file():
        raise InputError(f"{shown}: not a regular file")
    reason = not_writable(out.parent)
    if reason:
        raise InputError(f"{shown}: cannot be written ({reason}); choose another out=<file.csv>")
    return out


def to_csv(rows: list[dict], topk: int) -> str:
    """``file,class_1,prob_1,…,class_k,prob_k``: one row per image."""
    k = len(rows[0]["classes"]) if rows else topk
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "prob")])
    for row in rows:
        cells = [v for pair in zip(row["classes"], row["probs"], strict=True) for v in pair]
        writer.writerow([row["file"]] + [f"{v:.6f}" if isinstance(v, float) else v for v in cells])
    return buffer.getvalue()


def _print_table(rows: list[dict], ckpt: Path, inputs: Path) -> None:
    """The top-k table; files are shown relative to the ``inputs`` folder."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"predictions of {ckpt}")
    table.add_column("file", overflow="fold")
    for i in range(1, len(rows[0]["classes"]) + 1 if rows else 1):
        table.add_column(f"#{i}", no_wrap=True)
    for row in rows:
        cells = [f"{c} ({p:.3f})" for c, p in zip(row["classes"], row["probs"], strict=True)]
        shown = Path(row["file"]).relative_to(inputs) if inputs.is_dir() else Path(row["file"]).name
        table.add_row(str(shown), *cells)
    Console().print(table)


def _data_facts(run_dir: Path) -> dict:
    try:
        facts = read_json(run_dir / "metrics.json").get("data") or {}
    except (OSError, ValueError):
        facts = {}
    missing = [k for k in ("in_channels", "num_classes", "image_size") if k not in facts]
    if missing:
        raise InputError(
            f"{run_dir}: metrics.json lacks the data facts predict needs ({', '.join(missing)})"
        )
    return facts


def _positive_int(value: str, key: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InputError(f"{key}={value}: must be an integer >= 1")
    return number

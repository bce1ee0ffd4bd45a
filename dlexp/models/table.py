"""``dlexp models [overrides]``: every registered model's size and cost for the current data.

Each model is composed from its own ``dlexp/conf/model/<name>.yaml`` with the command line's
overrides (``data=…``, ``data.image_size=…``, and the ``model.<key>=…`` ones that the model
has), validated like a training run, then built on the meta device (no memory, no time) to
count its parameters and the multiply-accumulates of one image.
"""

from __future__ import annotations

import dataclasses

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from dlexp.config.model import MODEL_SCHEMAS
from dlexp.config.model_base import resolve_stem
from dlexp.errors import InputError
from dlexp.models.registry import UnsupportedError, build_on_meta


def models_command(args: list[str]) -> int:
    """Print the table of registered models for the data the overrides select."""
    from dlexp.config import register_configs

    register_configs()
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise InputError(f"{flags[0]}: dlexp models takes key=value overrides only")
    rows, title = model_rows(args)
    table = Table(title=title)
    for column, justify in (
        ("model", "left"),
        ("stem", "left"),
        ("params", "right"),
        ("MACs/image", "right"),
        ("input supported", "left"),
    ):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _model_key(override: str) -> str | None:
    key = override.lstrip("+~").split("=", 1)[0]
    return key.split(".")[1] if key.startswith("model.") else None


def model_rows(args: list[str]) -> tuple[list[tuple[str, ...]], str]:
    """One row per model (name, stem, params, MACs, supported) and the table's title."""
    from dlexp.preflight import check_command_line

    chosen = [a.split("=", 1)[1] for a in args if a.startswith("model=")]
    rest = [a for a in args if not a.startswith("model=")]
    fields = {n: {f.name for f in dataclasses.fields(s)} for n, s in MODEL_SCHEMAS.items()}
    for key in filter(None, map(_model_key, rest)):
        if not any(key in f for f in fields.values()):
            raise InputError(f"model.{key}: no registered model has this key")
    rows, shape, data_name = [], None, ""
    for name in chosen or sorted(MODEL_SCHEMAS):
        overrides = [a for a in rest if _model_key(a) in (None, *fields.get(name, ()))]
        try:
            cfg = check_command_line([*overrides, f"model={name}"]).configs[0]
        except UnsupportedError as exc:
            rows.append((name, "", "-", "-", f"no: {exc.reason}"))
            continue
        shape, data_name = cfg.data.shape(), cfg.data.name
        stem = resolve_stem(cfg.model.stem_choice, shape.image_size) or "-"
        params, macs = count(cfg.model, shape)
        rows.append((name, stem, f"{params:,}", si_count(macs), "yes"))
    title = "models"
    if shape is not None:
        s = shape.image_size
        title = (
            f"models for data={data_name}: {shape.in_channels}x{s}x{s} images, "
            f"{shape.num_classes} classes"
        )
    return rows, title


def count(model_cfg, shape) -> tuple[int, int]:
    """Parameters and multiply-accumulates (FLOPs / 2) of one image, built on the meta device."""
    model = build_on_meta(model_cfg, shape).eval()
    with torch.device("meta"):
        x = torch.empty(1, shape.in_channels, shape.image_size, shape.image_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def si_count(n: int) -> str:
    """``n`` with an SI prefix: ``61.7 k``, ``2.0 M``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)

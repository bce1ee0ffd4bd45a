"""``dlexp eval ckpt=<run dir or .ckpt> [overrides]``: test a trained run again.

The run's datamodule and model are rebuilt from its saved ``config.yaml`` with the
overrides applied on top (``data=mnist``, ``data.batch_size=256``, ``trainer.accelerator=cpu``
…), the checkpoint is loaded with ``weights_only=True``, Lightning's ``trainer.test`` runs
on the test split and the result is written to ``eval.json`` in the run directory. On the
run's own data it reproduces the training run's test metrics. ``test.tta=flip|flip_translate``
tests it again with test-time augmentation (:mod:`dlexp.tta`), recorded as ``test_tta``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from dlexp.config import Config
from dlexp.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from dlexp.io import atomic_write_json, read_json
from dlexp.run_config import (
    EVAL_OVERRIDES,
    inside,
    resolve_checkpoint,
    run_dir_of,
    saved_config,
)
from dlexp.rundir import acquire

USAGE = """usage: dlexp eval ckpt=<run dir or .ckpt> [overrides]

Tests the checkpoint (a run directory: its best checkpoint) on the test split of the run's
data config. Overrides that change the evaluation apply on top (data=mnist picks another
test set; test.tta=flip_translate tests with test-time augmentation; data.root,
data.batch_size, seed, trainer.accelerator, trainer.precision ...; the full list is in the
message for any other key). Writes eval.json in the run directory.
"""


def eval_command(args: list[str]) -> int:
    """Entry point of ``dlexp eval``."""
    from dlexp.cli import key_values

    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_BAD_INPUT
    options = key_values(args, "eval")
    if "ckpt" not in options:
        raise InputError("ckpt: required (a dlexp run directory or a .ckpt file)")
    overrides = [arg for arg in args if not arg.startswith("ckpt=")]
    ckpt = resolve_checkpoint(options["ckpt"], "ckpt")
    run_dir = run_dir_of(ckpt)
    if run_dir is None:
        raise InputError(f"ckpt={ckpt}: no config.yaml beside it (eval needs the run's directory)")
    cfg = saved_config(run_dir, overrides, allowed=EVAL_OVERRIDES, command="eval")
    with acquire(run_dir, f"ckpt={options['ckpt']} (its run dir {run_dir})") or nullcontext():
        from dlexp.checkpoints import lightning_state_dict, safe_load  # torch: after the checks

        state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
        result = evaluate(cfg, ckpt, state, overrides)
        result["checkpoint"] = inside(ckpt, run_dir)  # a copied or moved run stays portable
        reference, reference_tta = _training_test(run_dir)
        if reference:
            result["training_test"] = reference
        if reference_tta:
            result["training_test_tta"] = reference_tta
        atomic_write_json(run_dir / "eval.json", result)
    metrics = ", ".join(f"{k} {v:.6f}" for k, v in result["test"].items())
    tta = result["test_tta"]["mode"]
    shown = f"{result['data']['test']} test images" + (f", test.tta={tta}" if tta != "none" else "")
    print(f"{ckpt}: {metrics} ({shown}) -> {run_dir / 'eval.json'}")
    return EXIT_OK


def evaluate(cfg: Config, ckpt: Path, state: dict, overrides: list[str]) -> dict:
    """Test ``state`` (loaded from ``ckpt``) on the test split of ``cfg``'s data.

    Returns the ``eval.json`` record.
    """
    import pytorch_lightning as pl

    from dlexp.checkpoints import restore_for_test
    from dlexp.console import set_verbose
    from dlexp.trainer import build_trainer
    from dlexp.tta import build_tta, tta_record

    set_verbose(cfg.verbose)
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = restore_for_test(
        cfg, state, key="ckpt", shown=str(ckpt), tta=build_tta(cfg.test, cfg.data.flip_ok)
    )
    # one process, whatever the run trained with (DDP would pad and repeat test samples)
    single = dataclasses.replace(cfg.trainer, strategy="auto", devices=1, num_nodes=1)
    trainer = build_trainer(single, callbacks=[], loggers=[], run_dir=ckpt.parent)
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    return {
        "checkpoint": str(ckpt),
        "overrides": overrides,
        "data": {
            "name": cfg.data.name,
            "test": len(datamodule.test_split),
            "num_classes": datamodule.num_classes,
        },
        "test": {k: float(v) for k, v in (tested[0] if tested else {}).items()},
        "test_tta": tta_record(cfg.test, cfg.data.flip_ok),
        "confusion_matrix": module.test_confusion.compute().tolist(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 3),
    }


def _training_test(run_dir: Path) -> tuple[dict | None, dict | None]:
    """The training run's own test metrics and the TTA they were scored with."""
    try:
        record = read_json(run_dir / "metrics.json")
    except (OSError, ValueError):
        return None, None
    return record.get("test") or None, record.get("test_tta") or None

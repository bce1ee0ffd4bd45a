"""dlexp on one GPU: training images/s per precision setting, the speed run's time to 94 %
on CIFAR-10, and host-device synchronizations inside the training steps.

One call, under 8 minutes (``--budget``) on one GPU:

1. Training images/s of ResNet-18 on CIFAR-shaped data (random images written as CIFAR-10
   batch files in a temporary folder), through ``dlexp train`` itself, at: fp32, bf16-mixed,
   bf16-mixed + channels_last, and bf16-mixed + channels_last + torch.compile; each printed
   with its ratio to fp32 (x1.50: 1.5 times fp32's rate). The rate is taken from the last
   epoch (after cuDNN autotuning and compilation).
2. Synchronizations: a few training steps of ``+experiment=speedrun_cifar10`` (not compiled)
   on those images with ``torch.cuda.set_sync_debug_mode("error")`` around every optimizer
   step (forward, backward, update: :class:`dlexp.cuda_sync.SyncDebugMode`); it passes when
   no step made the host wait for the GPU, and names the first operation that did otherwise.
3. Time to 94 % on CIFAR-10 with ``dlexp train +experiment=speedrun_cifar10`` (speednet,
   bf16, channels_last, compile), stopped as soon as the validation accuracy reaches 94 %:
   the seconds from the first training step to the end of that epoch (compilation
   included: the first epoch's seconds are printed too), from launch, and the test accuracy
   of the best checkpoint. It reads the official CIFAR-10 python files from ``--data DIR``
   or ``$DLEXP_DATA`` (DIR/cifar-10-batches-py; never written); it is skipped when they are
   not there, and ``--only throughput`` needs no data at all. Extra ``key=value`` arguments
   are added to this run (e.g. ``trainer.max_epochs=12``).

Without a CUDA device it exits (code 2) with a message; ``--dry-run`` runs the same steps on
the CPU with tiny sizes (compile with the eager backend; the speed run on the random images
when no CIFAR-10 is given) to check the script itself. Every run writes into a temporary
directory. Usage:
    python bench/gpu.py [--data DIR] [--budget 470] [--dry-run]
        [--only throughput|sync|accuracy] [overrides...]
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA_ENV, add_data_option, bench_parser, child_env, data_dir

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
VARIANTS = {
    "fp32": ["trainer.precision=32-true"],
    "bf16-mixed": ["trainer.precision=bf16-mixed"],
    "bf16 + channels_last": ["trainer.precision=bf16-mixed", "model.channels_last=true"],
    "bf16 + channels_last + compile": [
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "model.compile=true",
    ],
}
SPEEDRUN = ["+experiment=speedrun_cifar10"]
STOP_AT_94 = [
    "callbacks=early_stopping",
    "callbacks.early_stopping.monitor=val/acc",
    "callbacks.early_stopping.mode=max",
    "callbacks.early_stopping.patience=100",
    "callbacks.early_stopping.stopping_threshold=0.94",
]
SYNC_ERROR = [
    "+callbacks.sync_debug._target_=dlexp.cuda_sync.SyncDebugMode",
    "+callbacks.sync_debug.mode=error",
]


def fake_cifar10(root: Path, train: int) -> Path:
    """Random uint8 images in the official CIFAR-10 python format."""
    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", -(-train // 5)) for i in range(1, 6)] + [
        ("test_batch", 256)
    ]:
        entry = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=n).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    return root


def dlexp_train(run_dir: Path, overrides: list[str], timeout: float) -> dict:
    """Run ``dlexp train`` into ``run_dir``; its metrics.json and epochs.csv rows."""
    command = [sys.executable, "-m", "dlexp", "train", f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=run_dir.parent,
        env=child_env(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dlexp train failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    record = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "epochs.csv") as f:
        record["rows"] = list(csv.DictReader(f))
    return record


def fake_root(tmp: Path, dry: bool) -> Path:
    """The random CIFAR-shaped images of the throughput runs (written once)."""
    root = tmp / "fake"
    if not root.is_dir():
        train = 512 if dry else 40000
        fake_cifar10(root, train=int(train / 0.98) + 1)
    return root


def device_options(dry: bool) -> list[str]:
    return ["trainer.accelerator=cpu"] if dry else ["trainer.accelerator=gpu"]


def throughput(tmp: Path, dry: bool, timeout: float) -> None:
    common = [
        *QUIET,
        "model=resnet18",
        "data=cifar10",
        f"data.root={fake_root(tmp, dry)}",
        "data.download=false",
        "data.verify_md5=false",
        "data.val_fraction=0.02",
        f"data.batch_size={64 if dry else 256}",
        f"trainer.max_epochs={1 if dry else 3}",
        "logger=csv",
        *device_options(dry),
    ]
    common += ["trainer.limit_train_batches=3"] if dry else ["trainer.benchmark=true"]
    rates = {}
    for name, options in VARIANTS.items():
        extra = ["model.compile_backend=eager"] if dry and "model.compile=true" in options else []
        record = dlexp_train(tmp / name.replace(" ", ""), [*common, *options, *extra], timeout)
        images = record["data"]["train"] if not dry else 3 * 64
        rates[name] = images / float(record["rows"][-1]["seconds"])
        print(
            f"  {name:32s} {rates[name]:10.0f} images/s   x{rates[name] / rates['fp32']:.2f} "
            "vs fp32",
            flush=True,
        )


def sync_check(tmp: Path, dry: bool, timeout: float) -> None:
    """A few speed-run steps with ``set_sync_debug_mode("error")`` around each."""
    import torch

    overrides = [
        *QUIET,
        *SPEEDRUN,
        *SYNC_ERROR,
        f"data.root={fake_root(tmp, dry)}",
        "data.download=false",
        "data.verify_md5=false",
        "model.compile=false",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={2 if dry else 10}",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=csv",
        *device_options(dry),
    ]
    overrides += ["data.batch_size=64"] if dry else []
    try:
        dlexp_train(tmp / "sync", overrides, timeout)
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if "synchroniz" in line.lower()]
        print(f"synchronizations in the training steps: FAILED: {(lines or [str(exc)])[-1]}")
        return
    if torch.cuda.is_available():
        print("synchronizations in the training steps: none (set_sync_debug_mode('error'))")
    else:
        print("synchronizations in the training steps: not checked (no CUDA: a dry run)")


def time_to_94(cifar_root: Path, tmp: Path, dry: bool, timeout: float, extra: list[str]) -> None:
    if not (cifar_root / "cifar-10-batches-py").is_dir():
        print(f"time to 94 %: skipped (no cifar-10-batches-py in {cifar_root})")
        return
    overrides = [*QUIET, *SPEEDRUN, *STOP_AT_94, f"data.root={cifar_root}"]
    overrides += ["data.download=false", "logger=csv", *device_options(dry)]
    if dry:
        overrides += ["trainer.limit_train_batches=2", "trainer.max_epochs=1"]
        overrides += ["data.verify_md5=false", "data.batch_size=64"]
        overrides += ["model.compile_backend=eager"]
    overrides += extra
    started = time.time()
    try:
        record = dlexp_train(tmp / "to94", overrides, timeout)
    except subprocess.TimeoutExpired:
        print(f"time to 94 %: not reached within the budget ({timeout:.0f} s)")
        return
    rows = record["rows"]
    elapsed, reached = 0.0, None
    for row in rows:
        elapsed += float(row["seconds"])
        if float(row.get("val/acc", 0)) >= 0.94:
            reached = (int(row["epoch"]), elapsed)
            break
    test_acc = record["test"].get("test/acc")
    first = f"first epoch {float(rows[0]['seconds']):.1f} s with compilation"
    if reached:
        print(
            f"time to 94 % val acc: {reached[1]:.1f} s from the first step (epoch "
            f"{reached[0]}; {first}), {record['first_step_at'] - started + reached[1]:.1f} s "
            f"from launch; test acc {test_acc}"
        )
    else:
        best = max(float(r.get("val/acc", 0)) for r in rows)
        print(
            f"time to 94 %: not reached in {len(rows)} epochs, {elapsed:.1f} s ({first}); "
            f"best val acc {best}, test acc {test_acc}"
        )


def main() -> int:
    parser = bench_parser(__doc__)
    add_data_option(
        parser,
        "folder holding the official CIFAR-10 python files (DIR/cifar-10-batches-py), "
        "for the time to 94 %%; read only (default: $DLEXP_DATA)",
    )
    parser.add_argument("--budget", type=float, default=470, help="seconds for the whole script")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--only", choices=("throughput", "sync", "accuracy"), help="one part only")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the speed run")
    args = parser.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); this is "
            "the GPU acceptance script: run it where a GPU is lent, or use --dry-run on the CPU",
            file=sys.stderr,
        )
        return 2
    cifar_root = None  # a dry run without data runs the speed run on the random images
    given = args.data is not None or bool(os.environ.get(DATA_ENV))
    if args.only in (None, "accuracy") and (given or not args.dry_run):
        layout = "cifar-10-batches-py (or --only throughput / sync)"
        cifar_root = data_dir(args, "CIFAR-10 for the time to 94 %", layout)
    started = time.time()
    device = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "throughput"):
            print("ResNet-18, CIFAR-shaped data, training images/s:")
            throughput(Path(tmp), args.dry_run, timeout=args.budget)
        if args.only in (None, "sync"):
            sync_check(Path(tmp), args.dry_run, timeout=args.budget)
        if args.only in (None, "accuracy"):
            left = args.budget - (time.time() - started)
            root = cifar_root or fake_root(Path(tmp), args.dry_run)
            time_to_94(root, Path(tmp), args.dry_run, max(left, 1), args.overrides)
    print(f"total {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

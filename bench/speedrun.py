"""The MNIST speed run on this machine: ``dlexp train +experiment=speedrun_mnist`` against its
target, >= 99 % test accuracy after one epoch.

Each repeat is one real ``python -m dlexp train`` process on the official MNIST files
(``--data DIR`` or ``$DLEXP_DATA``, DIR holding ``MNIST/raw/*.gz``; read in place, never
written). It prints, per repeat, the test accuracy, the epoch's seconds (training and
validation, from epochs.csv), the run's seconds (``wall_seconds`` in metrics.json: loading
the data, fitting the whitening, the epoch and the test) and the whole process's wall
time, then whether the target is met (by every repeat).
The CIFAR-10 speed run needs a GPU: ``bench/gpu.py``. Every run writes into a temporary
directory. Usage:
    python bench/speedrun.py [--data DIR] [--repeats 1] [extra overrides...]
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import add_data_option, bench_parser, data_dir, official_files, run_dlexp

TARGET = 0.99


def run(source: Path, seed: int, extra: list[str], tmp: Path) -> dict:
    """One ``dlexp train +experiment=speedrun_mnist`` process; its figures."""
    run_dir = tmp / f"run{seed}"
    started = time.time()
    run_dlexp(
        "train", "+experiment=speedrun_mnist", f"data.root={source}", "data.download=false",
        f"seed={seed}", "logger=none", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}", *extra, cwd=tmp,
    )  # fmt: skip
    wall = time.time() - started
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    return {
        "acc": metrics["test"]["test/acc"],
        "epochs": metrics["epochs"],
        "epoch_s": float(rows[-1]["seconds"]),
        "run_s": metrics["wall_seconds"],  # from loading the data to the end of the test
        "wall": wall,
    }


def main() -> int:
    parser = bench_parser(__doc__)
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=1, help="runs, with seeds 0, 1, ...")
    parser.add_argument("extra", nargs="*", help="overrides added to every run")
    args = parser.parse_args()
    source = data_dir(args, "real MNIST")
    official_files(source, ["mnist"])
    print(f"{'seed':>4} {'test acc':>8} {'epochs':>6} {'epoch s':>8} {'run s':>6} {'wall s':>7}")
    accs = []
    for seed in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            row = run(source, seed, args.extra, Path(tmp))
        accs.append(row["acc"])
        print(
            f"{seed:>4} {row['acc']:>8.4f} {row['epochs']:>6} {row['epoch_s']:>8.1f} "
            f"{row['run_s']:>6.1f} {row['wall']:>7.1f}",
            flush=True,
        )
    met = all(a >= TARGET for a in accs)
    print(f"target >= {TARGET:.2f} test accuracy in one epoch: {'met' if met else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

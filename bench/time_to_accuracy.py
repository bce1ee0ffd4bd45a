"""Time to accuracy of dlexp's recipes, each run a real ``dlexp train`` process.

Targets, checked and printed side by side with the figures measured:

* ``digits``: the default experiment (``dlexp train``: LeNet-5 on digits) reaches >= 0.97
  test accuracy in <= 15 s of wall time for the whole process;
* ``mnist``: LeNet-5 on real MNIST reaches >= 99.0 % test accuracy within 3 epochs;
* ``fashion``: a small CNN (LeNet-5 with BatchNorm, 62 k parameters) on Fashion-MNIST reaches
  >= 91 % test accuracy (``augment=basic``: crop and flip; 30 epochs, several minutes).

Each row prints the test accuracy, the epochs run and the wall seconds of the whole process
(launch to exit), and whether its target is met. ``mnist`` and ``fashion`` need the official
files: ``--data DIR`` or ``$DLEXP_DATA``, DIR holding ``MNIST/raw/*.gz`` and
``FashionMNIST/raw/*.gz`` (never written: dlexp unpacks them in a temporary folder of
links); ``--only digits`` needs none. Every run writes into a temporary directory. Usage:
    python bench/time_to_accuracy.py [--data DIR] [--only digits mnist fashion]
        [--fashion-epochs 30] [extra overrides...]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from _common import (
    SOURCES,
    add_data_option,
    bench_parser,
    data_dir,
    official_files,
    run_dlexp,
)

# recipe overrides on top of the defaults (data.loader=memory, Adam, OneCycle to 0.005,
# label smoothing 0.1)
RECIPES = {
    "digits": ([], 0.97, "wall <= 15 s"),
    "mnist": (["data=mnist", "model=lenet5", "trainer.max_epochs=3"], 0.990, "3 epochs"),
    "fashion": (
        ["data=fashion_mnist", "model=lenet5", "model.norm=batch", "augment=basic"],
        0.91,
        "small CNN",
    ),
}
DATA = {"mnist": "mnist", "fashion": "fashion_mnist"}  # task -> dlexp data name


def data_overrides(name: str, source: Path | None) -> list[str]:
    """``data.root`` at the official files, read in place (``download=false``)."""
    if name not in DATA:
        return []
    return [f"data.root={source}", "data.download=false"]


def run(overrides: list[str], tmp: Path) -> dict:
    """One ``python -m dlexp train`` process; wall seconds, epochs and test accuracy."""
    run_dir = tmp / "run"
    started = time.time()
    run_dlexp(
        "train",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *overrides,
        cwd=tmp,
    )
    wall = time.time() - started
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"wall": wall, "epochs": metrics["epochs"], "acc": metrics["test"]["test/acc"]}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--fashion-epochs", type=int, default=30)
    add_data_option(parser)
    parser.add_argument("extra", nargs="*", help="overrides added to every run")
    args = parser.parse_args()
    needs = [DATA[n] for n in args.only if n in DATA]
    source = None
    if needs:  # checked before the first run, not after minutes of training
        layout = " and ".join(f"{SOURCES[n]}/raw/*.gz" for n in needs)
        wanted = " and ".join(n for n in args.only if n in DATA)
        source = data_dir(args, f"real data for {wanted} (or --only digits)", layout)
        official_files(source, needs)
    print(f"{'task':<8} {'target':<16} {'test acc':>8} {'epochs':>6} {'wall s':>7}  met")
    for name in args.only:
        overrides, target, what = RECIPES[name]
        if name == "fashion":
            overrides = [*overrides, f"trainer.max_epochs={args.fashion_epochs}"]
        with tempfile.TemporaryDirectory() as tmp:
            data = data_overrides(name, source)
            row = run([*overrides, *data, *args.extra], Path(tmp))
        met = row["acc"] >= target and (name != "digits" or row["wall"] <= 15)
        print(
            f"{name:<8} {f'>= {target:.3f}, {what}':<16} {row['acc']:>8.4f} {row['epochs']:>6} "
            f"{row['wall']:>7.1f}  {'yes' if met else 'no'}",
            flush=True,
        )


if __name__ == "__main__":
    main()

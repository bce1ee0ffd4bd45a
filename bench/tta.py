"""Test accuracy of one trained checkpoint scored with each ``test.tta`` mode, side by side.

For each dataset and seed, one ``dlexp train`` process trains LeNet-5 with ``augment=basic``
(random crops: translations of up to 4 px, which flip_translate's 2 px shifts stay within;
the flip is off on these datasets), then ``dlexp eval`` tests its best checkpoint with
``test.tta=none``, ``flip`` and ``flip_translate`` (each ``--translate`` value). A row prints
the test accuracy of each mode and the last column flip_translate's change from ``none``
(the same checkpoint: a paired comparison); the mean row averages the seeds.

On digits and MNIST ``flip`` is a no-op: a mirrored digit may be another digit (the data's
``flip_ok`` is false), so the mirror is left out and ``flip`` scores the image alone, as
``none`` does (the bench checks that both give the same accuracy); ``flip_translate`` there
scores the image and its two shifts.

``digits`` needs no files; ``mnist`` reads the official files in place: ``--data DIR`` or
``$DLEXP_DATA``, DIR holding ``MNIST/raw/*.gz`` (never written). Every run writes into a
temporary directory. Usage:
    python bench/tta.py [--data DIR] [--only digits mnist] [--seeds 0 1 2]
        [--translate 1 2] [--augment basic] [extra train overrides...]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from _common import add_data_option, bench_parser, data_dir, official_files, run_dlexp

RECIPES = {  # dataset -> train overrides (LeNet-5, Adam, OneCycle, label smoothing 0.1)
    "digits": ["data=digits", "trainer.max_epochs=15"],
    "mnist": ["data=mnist", "trainer.max_epochs=3"],
}


def accuracies(train: list[str], modes: list[tuple[str, ...]], tmp: Path) -> list[float]:
    """Train once with ``train``; the test accuracy of each eval override set in ``modes``."""
    run_dir = tmp / "run"
    quiet = ["trainer.enable_progress_bar=false", "logger=none"]
    run_dlexp("train", f"hydra.run.dir={run_dir}", *quiet, *train, cwd=tmp)
    out = []
    for overrides in modes:
        run_dlexp("eval", f"ckpt={run_dir}", *overrides, cwd=tmp)
        result = json.loads((run_dir / "eval.json").read_text())
        assert result["test_tta"]["mirror"] is False, result["test_tta"]  # flip_ok false
        out.append(result["test"]["test/acc"])
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--translate", nargs="+", type=int, default=[2], help="px, flip_translate")
    parser.add_argument("--augment", default="basic", help="the training's augment level")
    add_data_option(parser)
    parser.add_argument("extra", nargs="*", help="overrides added to every training run")
    args = parser.parse_args()
    source = None
    if "mnist" in args.only:  # checked before the first run, not after minutes of training
        source = data_dir(args, "real MNIST (or --only digits)")
        official_files(source, ["mnist"])

    modes = [("test.tta=none",), ("test.tta=flip",)]
    modes += [("test.tta=flip_translate", f"test.translate={t}") for t in args.translate]
    names = ["none", "flip", *(f"flip_tr({t})" for t in args.translate)]
    header = f"{'data':<7} {'seed':>4} " + " ".join(f"{n:>12}" for n in names)
    print(f"augment={args.augment}; test accuracy of the same checkpoint per test.tta mode")
    print(header + "  " + " ".join(f"{'Δ tr(' + str(t) + ')':>9}" for t in args.translate))
    for name in args.only:
        data = [f"data.root={source}", "data.download=false"] if name == "mnist" else []
        rows = []
        for seed in args.seeds:
            train = [*RECIPES[name], *data, f"augment={args.augment}", f"seed={seed}", *args.extra]
            with tempfile.TemporaryDirectory() as tmp:
                accs = accuracies(train, modes, Path(tmp))
            assert accs[0] == accs[1], accs  # flip without the mirror: the image alone
            rows.append(accs)
            print(_row(name, str(seed), accs), flush=True)
        if len(rows) > 1:
            print(_row(name, "mean", [statistics.fmean(col) for col in zip(*rows, strict=True)]))


def _row(name: str, seed: str, accs: list[float]) -> str:
    deltas = " ".join(f"{acc - accs[0]:>+9.4f}" for acc in accs[2:])
    return f"{name:<7} {seed:>4} " + " ".join(f"{a:>12.4f}" for a in accs) + "  " + deltas


if __name__ == "__main__":
    main()

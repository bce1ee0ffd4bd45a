"""The default experiment (`dlexp train`: LeNet-5 on digits) timed as a user sees it.

Prints, for each repeat: wall seconds of the whole process (launch to exit), seconds from
process launch to the first training step, and the test accuracy; then the medians. The
difference between the two times is the training itself plus testing and writing the run's
records. Needs no data files (digits ship with scikit-learn); each run writes into a
temporary directory. Usage:
    python bench/default_run.py [--repeats 3] [extra overrides...]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_parser, child_env


def run_once(overrides: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        started = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dlexp",
                "train",
                f"hydra.run.dir={run_dir}",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=child_env(),
        )
        wall = time.time() - started
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "to_first_step_s": metrics["first_step_at"] - started,
        "test_acc": metrics["test"]["test/acc"],
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args, overrides = parser.parse_known_args()
    rows = []
    for i in range(args.repeats):
        row = run_once(overrides)
        rows.append(row)
        print(
            f"run {i + 1}: wall {row['wall_s']:.2f} s, first step after "
            f"{row['to_first_step_s']:.2f} s, test acc {row['test_acc']:.4f}",
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"median of {len(rows)}: wall {med['wall_s']:.2f} s, first step after "
        f"{med['to_first_step_s']:.2f} s, test acc {med['test_acc']:.4f}"
    )


if __name__ == "__main__":
    main()

"""Per-job overhead of a sweep: what each job costs beyond its training. Target <= 0.5 s.

Runs ``dlexp train -m`` over 8 short jobs (8 seeds of a tiny LeNet-5 run on digits) in one
process, as a user would, and compares the sweep's wall time with the sum of the jobs' own fit
times (first training step to the end of the last epoch, from ``metrics.json``/``epochs.csv``).
The difference, minus the start-up of the process (measured as the time to the first job's
first step), divided by the number of jobs, is what each job costs beyond its training:
composing, building data and model, the Trainer, testing, writing records, the summary.
Needs no data files; the sweep runs in a temporary directory. Usage:
    python bench/sweep_overhead.py [--jobs 8] [extra overrides...]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env

SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=8)
    args, overrides = parser.parse_known_args()
    seeds = ",".join(str(s) for s in range(args.jobs))
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        started = time.time()
        subprocess.run(
            [
                *(sys.executable, "-m", "dlexp", "train", "-m", f"hydra.sweep.dir={sweep}"),
                *(f"seed={seeds}", *SHORT, *overrides),
            ],
            check=True,
            capture_output=True,
            cwd=tmp,
            env=child_env(),
        )
        wall = time.time() - started
        jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
        records = [json.loads((job / "metrics.json").read_text()) for job in jobs]
        fits = []
        for job in jobs:
            with open(job / "epochs.csv") as f:
                fits.append(sum(float(row["seconds"]) for row in csv.DictReader(f)))
    assert len(records) == args.jobs and all(r["status"] == "completed" for r in records)
    startup = min(r["first_step_at"] for r in records) - started
    per_job = (wall - startup - sum(fits)) / args.jobs
    print(
        f"{args.jobs} jobs: sweep wall {wall:.2f} s, process start-up {startup:.2f} s, "
        f"sum of fit times {sum(fits):.2f} s"
    )
    print(f"per-job overhead beyond fit: {per_job:.2f} s (target <= 0.5 s)")


if __name__ == "__main__":
    main()

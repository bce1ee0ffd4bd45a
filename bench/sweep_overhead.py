"""Per-job overhead of a sweep: what each job costs beyond its training. Target <= 0.5 s.

Runs ``dlexp train -m`` over 8 short jobs (8 seeds of a tiny LeNet-5 run on digits) in one
process, as a user would. Each job's first training step is in its ``metrics.json``
(``first_step_at``) and its fit time (first step to the end of its last epoch) in its
``epochs.csv``. What a job costs beyond its training (the target) is the time from one job's
first step to the next job's, minus the first job's fit time: testing it, writing its records,
then composing, building data, model and Trainer for the next, up to its first step. The
median over the jobs is printed, with each interval.

Printed beside it, for comparison with earlier figures: the sweep's wall time minus the
process's start-up (to the first job's first step) and the jobs' fit times, per job; it also
spreads over the jobs what happens once per sweep, after its last job: the summary, and the
exit of the process (the interpreter's teardown after importing torch, ~1.3 s here).
Needs no data files; the sweep runs in a temporary directory. Usage:
    python bench/sweep_overhead.py [--jobs 8] [extra overrides...]
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_parser, child_env

SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def main() -> None:
    parser = bench_parser(__doc__)
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
        jobs = sorted((p.parent for p in sweep.glob("*/metrics.json")), key=lambda p: int(p.name))
        records = [json.loads((job / "metrics.json").read_text()) for job in jobs]
        fits = []
        for job in jobs:
            with open(job / "epochs.csv") as f:
                fits.append(sum(float(row["seconds"]) for row in csv.DictReader(f)))
    assert len(records) == args.jobs and all(r["status"] == "completed" for r in records)
    firsts = [r["first_step_at"] for r in records]
    between = [firsts[i + 1] - firsts[i] - fits[i] for i in range(len(firsts) - 1)]
    startup = firsts[0] - started
    spread = (wall - startup - sum(fits)) / args.jobs
    print(
        f"{args.jobs} jobs: sweep wall {wall:.2f} s, process start-up {startup:.2f} s, "
        f"sum of fit times {sum(fits):.2f} s"
    )
    print(
        f"per-job overhead beyond fit: {statistics.median(between):.2f} s median "
        f"(each: {', '.join(f'{b:.2f}' for b in between)}; target <= 0.5 s)"
    )
    print(f"(wall - start-up - fits, per job, with the sweep's end and exit: {spread:.2f} s)")


if __name__ == "__main__":
    main()

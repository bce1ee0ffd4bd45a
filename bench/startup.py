"""dlexp's own start-up cost: what it adds before the first training step. Target <= 1 s.

Two kinds of child process, launched with this interpreter from a temporary working
directory, in interleaved rounds (the order swapped every other round):

* ``dlexp train`` (a tiny run on the default data): seconds from launch to its first
  training step (``first_step_at`` in metrics.json);
* ``python -c "import pytorch_lightning"``: seconds from launch to the end of the import
  (the child prints the time then).

Both are launch-to-event times on the same clock and neither includes the child's exit
(tearing down an interpreter that imported torch takes ~1 s, which made a whole-process
baseline larger than dlexp's time to its first step). Each round's difference is what dlexp
adds: its imports beyond Lightning, composing and checking the config, building data, model
and Trainer. Printed: every round, then the median of the per-round differences with their
range (min..max), the spread due to this machine's noise; a median inside a range that spans
0 means the cost is below what the machine can resolve.

    python bench/startup.py [--repeats 5] [extra overrides...]
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

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
BARE = "import time, pytorch_lightning; print(repr(time.time()))"


def to_first_step(overrides: list[str]) -> float:
    """Seconds from launching ``dlexp train`` to its first training step."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "dlexp", "train", f"hydra.run.dir={run_dir}"]
        started = time.time()
        proc = subprocess.run(
            [*command, *TINY, *overrides],
            capture_output=True,
            text=True,
            cwd=tmp,
            env=child_env(PYTHONUNBUFFERED="1"),
        )
        if proc.returncode != 0:
            sys.exit(f"dlexp train exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
        return json.loads((run_dir / "metrics.json").read_text())["first_step_at"] - started


def to_lightning_imported() -> float:
    """Seconds from launching ``python -c "import pytorch_lightning"`` to the import's end."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        out = subprocess.run(
            [sys.executable, "-c", BARE],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=child_env(),
        ).stdout
    return float(out.strip().splitlines()[-1]) - started


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    args, overrides = parser.parse_known_args()
    to_lightning_imported()  # warm the file cache for both
    to_first_step(overrides)
    firsts, bares, costs = [], [], []
    for i in range(args.repeats):
        if i % 2 == 0:
            bare, first = to_lightning_imported(), to_first_step(overrides)
        else:
            first, bare = to_first_step(overrides), to_lightning_imported()
        firsts.append(first)
        bares.append(bare)
        costs.append(first - bare)
        print(
            f"round {i + 1}: first step after {first:.2f} s, pytorch_lightning imported after "
            f"{bare:.2f} s: dlexp adds {first - bare:.2f} s",
            flush=True,
        )
    cost = statistics.median(costs)
    print(
        f"median of {len(costs)} rounds: first training step {statistics.median(firsts):.2f} s, "
        f"Lightning imported {statistics.median(bares):.2f} s; dlexp start-up cost {cost:.2f} s "
        f"(rounds {min(costs):.2f}..{max(costs):.2f} s; target <= 1 s: "
        f"{'met' if cost <= 1 else 'not met'})"
    )


if __name__ == "__main__":
    main()

"""dlexp's own start-up cost (issue 7, 4c). Target <= 1 s.

Measured side by side, alternating: the seconds from launching ``dlexp train`` (tiny run) to
its first training step (``first_step_at`` in metrics.json), and the seconds of a bare
``python -c "import pytorch_lightning"``. The difference is what dlexp adds before training
starts: its imports beyond Lightning, Hydra's composition, the checks, building data and model.
Usage:
    python bench/startup.py [--repeats 5] [extra overrides...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def to_first_step(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        started = time.time()
        subprocess.run(
            [sys.executable, "-m", "dlexp", "train", f"hydra.run.dir={run_dir}", *TINY, *overrides],
            check=True,
            capture_output=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        return json.loads((run_dir / "metrics.json").read_text())["first_step_at"] - started


def bare_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pytorch_lightning"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args, overrides = parser.parse_known_args()
    bare_import()  # warm the file cache for both
    to_first_step(overrides)
    firsts, bares = [], []
    for i in range(args.repeats):
        bares.append(bare_import())
        firsts.append(to_first_step(overrides))
        print(
            f"repeat {i + 1}: first step after {firsts[-1]:.2f} s, "
            f"import pytorch_lightning {bares[-1]:.2f} s",
            flush=True,
        )
    first, bare = statistics.median(firsts), statistics.median(bares)
    print(
        f"median: first training step {first:.2f} s - bare Lightning import {bare:.2f} s = "
        f"dlexp start-up cost {first - bare:.2f} s (target <= 1 s)"
    )


if __name__ == "__main__":
    main()

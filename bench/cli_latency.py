"""How long dlexp's quick commands take, against a bare ``import pytorch_lightning``.

Runs each command below as a child process of this interpreter (``python -m dlexp ...``),
from a temporary working directory of its own (nothing is written in the repository), in
interleaved rounds: every round runs each command once, the order rotated from round to
round, so a drift in the machine's speed hits all of them alike.

* ``train model=resnet999``: an unknown option, which must fail fast with exit status 2;
* ``train --help``, ``train --cfg job`` and ``--help``: answers that need no training;
* the baseline, ``python -c "import pytorch_lightning"``.

Printed per command: the median and the minimum wall seconds (launch to exit) over the
rounds, and the ratio to the baseline (the median of each round's command / baseline
ratio); the target is a ratio <= 0.2 (a fifth of the time Lightning takes to import).
A separate run of each command with ``python -X importtime`` then records whether it imported
``torch`` and ``pytorch_lightning`` at all, with their cumulative import times: a command
that imports neither cannot be slowed by them. The bench exits 1 if a command's exit status
is not the expected one. Usage:
    python bench/cli_latency.py [--rounds 5]
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_parser, child_env

TARGET = 0.2
BASELINE = "import pytorch_lightning"
# (label, interpreter arguments, expected exit status)
COMMANDS = [
    ("dlexp train model=resnet999", ["-m", "dlexp", "train", "model=resnet999"], 2),
    ("dlexp train --help", ["-m", "dlexp", "train", "--help"], 0),
    ("dlexp train --cfg job", ["-m", "dlexp", "train", "--cfg", "job"], 0),
    ("dlexp --help", ["-m", "dlexp", "--help"], 0),
    (BASELINE, ["-c", "import pytorch_lightning"], 0),
]
WATCHED = ("torch", "pytorch_lightning")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)\s*$")


def run(args: list[str], cwd: Path, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of ``python <args>`` from launch to exit, and the finished process."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return time.perf_counter() - started, proc


def imported(args: list[str], cwd: Path, timeout: float) -> dict[str, float | None]:
    """Cumulative import seconds of each watched package (None: not imported)."""
    _, proc = run(["-X", "importtime", *args], cwd, timeout)
    found: dict[str, float | None] = dict.fromkeys(WATCHED)
    for line in proc.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and match[2] in found:
            found[match[2]] = int(match[1]) / 1e6
    return found


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per command, at most")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    labels = [label for label, _, _ in COMMANDS]
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    codes: dict[str, set[int]] = {label: set() for label in labels}
    messages: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cwds = {label: Path(tmp) / f"cwd{i}" for i, label in enumerate(labels)}
        for cwd in cwds.values():
            cwd.mkdir()
        run(["-c", BASELINE], cwds[BASELINE], args.timeout)  # warm the file cache
        for r in range(args.rounds):
            order = COMMANDS[r % len(COMMANDS) :] + COMMANDS[: r % len(COMMANDS)]
            this_round = {}
            for label, command, _ in order:
                wall, proc = run(command, cwds[label], args.timeout)
                this_round[label] = wall
                seconds[label].append(wall)
                codes[label].add(proc.returncode)
                if proc.returncode != 0:
                    messages[label] = (proc.stderr.strip().splitlines() or [""])[-1]
            for label in labels:
                ratios[label].append(this_round[label] / this_round[BASELINE])
            print(
                f"round {r + 1}: "
                + ", ".join(f"{label} {this_round[label]:.2f} s" for label in labels),
                flush=True,
            )
        imports = {
            label: imported(command, cwds[label], args.timeout) for label, command, _ in COMMANDS
        }
        left = {label: sorted(p.name for p in cwd.iterdir()) for label, cwd in cwds.items()}

    print(
        f"\nwall seconds, launch to exit, {args.rounds} interleaved rounds; ratio: median of "
        f'the per-round ratios to `python -c "{BASELINE}"`'
    )
    header = (
        f"{'command':<28} {'median s':>8} {'min s':>6} {'ratio':>6} {'target':>7} {'met':>4} "
        f"{'exit':>5}  {'torch':>12}  {'pytorch_lightning':>17}"
    )
    print(header)
    wrong = []
    for label, _, expected in COMMANDS:
        ratio = statistics.median(ratios[label])
        baseline = label == BASELINE
        target = "-" if baseline else f"<= {TARGET}"
        met = "-" if baseline else ("yes" if ratio <= TARGET else "no")
        exit_codes = ",".join(str(c) for c in sorted(codes[label]))
        if codes[label] != {expected}:
            wrong.append(f"{label}: exit {exit_codes}, expected {expected}")
        shown = {
            name: "no" if t is None else f"yes ({t:.2f} s)" for name, t in imports[label].items()
        }
        print(
            f"{label:<28} {statistics.median(seconds[label]):>8.2f} {min(seconds[label]):>6.2f} "
            f"{ratio:>6.2f} {target:>7} {met:>4} {exit_codes:>5}  {shown['torch']:>12}  "
            f"{shown['pytorch_lightning']:>17}"
        )
    for label, message in messages.items():
        print(f"{label}: stderr ends with: {message[:160]}")
    for label, names in left.items():
        if names:
            print(f"{label}: left in its working directory: {', '.join(names)}")
    for line in wrong:
        print(f"unexpected exit status: {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

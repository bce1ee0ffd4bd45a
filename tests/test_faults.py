"""Fault injection with real processes: SIGKILL at random moments, then resume; two signals
at every moment of the interruption. The processes are forked by ``tests/faults.py`` (one
interpreter pays the imports), each one a real ``dlexp train`` that is killed or signalled.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import torch

from conftest import REPO, read_epochs, read_metrics, run_inprocess

# a short deterministic run: 3 epochs of 6 steps, no logger
TINY = [
    "model=mlp",
    "model.hidden_sizes=[16]",
    "data.train_samples=96",
    "data.batch_size=16",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "logger=none",
]
KILL_POINTS = 10
SEED = 13


def run_faults(spec: dict, tmp_path) -> list[dict]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "faults.py"), str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def weights(run) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def curve(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_epochs(run)]


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    assert run_inprocess("train", *TINY, f"hydra.run.dir={reference}", cwd=tmp_path) == 0
    expected = read_metrics(reference)
    length = 0.8 * expected["wall_seconds"]  # from its record's first write to its last
    rng = random.Random(SEED)
    kills = [[str(tmp_path / f"kill{i}"), rng.uniform(0, length)] for i in range(KILL_POINTS)]

    results = run_faults({"args": TINY, "kills": kills}, tmp_path)

    assert sum(r["killed"] for r in results) >= KILL_POINTS // 2, results  # most land in the run
    for result in results:
        run = tmp_path / result["dir"]
        assert result["resume_code"] == 0, result
        record = read_metrics(run)
        assert record["status"] == "completed", result
        assert record["test"] == expected["test"] and record["best"] == expected["best"], result
        assert record["best_epoch"] == expected["best_epoch"]
        assert curve(run) == curve(reference), result
        mine, theirs = weights(run), weights(reference)
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), result
        assert not list(run.rglob("*.tmp")), result  # a killed writer's temp files are cleaned


# the interrupt checkpoint of this model takes tens of ms: the delays fall before, during
# and after its save
DOUBLE = [
    *TINY,
    "model.hidden_sizes=[512,512]",
    "data.train_samples=320",
    "trainer.max_epochs=50",
]
DELAYS = [0.0, 0.005, 0.02, 0.06, 0.3]


def test_a_second_signal_at_any_moment_still_records_interrupted_and_leaves_no_temp(tmp_path):
    from dlexp.checkpoints import safe_load

    # the second signal: SIGINT, then SIGTERM, alternately over the delays
    runs = [
        [str(tmp_path / f"run{i}"), delay, ("SIGINT", "SIGTERM")[i % 2]]
        for i, delay in enumerate(DELAYS)
    ]
    results = run_faults({"args": DOUBLE, "double": runs}, tmp_path)
    assert len(results) == len(DELAYS)
    for result in results:
        run = tmp_path / result["dir"]
        assert result["code"] == 128 + signal.SIGINT, result  # the first signal decides
        record = read_metrics(run)
        assert record["status"] == "interrupted" and record["signal"] == "SIGINT", result
        assert record["last_completed_epoch"] >= 1
        assert not list(run.rglob("*.tmp")), result
        for ckpt in (run / "checkpoints").glob("*.ckpt"):
            assert "state_dict" in safe_load(ckpt, "ckpt")

"""Nothing a user started is lost: interruption, resume, divergence, resumable sweeps, faults.

The signal tests run ``dlexp train`` as a real process and send it SIGTERM/SIGINT mid-epoch.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pytest
import torch

from conftest import (
    QUICK,
    UNPRIVILEGED,
    read_epochs,
    read_metrics,
    run_cli,
    run_inprocess,
    start_cli,
    wait_for,
)

# Epochs long enough (batch 8: ~160 steps) to be signalled mid-epoch, reproducible on CPU.
RESUMABLE = [
    "model=mlp",
    "data.batch_size=8",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


def epochs_done(run_dir: Path) -> int:
    path = run_dir / "epochs.csv"
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars(tag)]
    return steps


def test_sigterm_mid_epoch_then_resume_reaches_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    assert run_inprocess("train", *RESUMABLE, f"hydra.run.dir={reference}", cwd=tmp_path) == 0

    cut = tmp_path / "cut"
    proc = start_cli("train", *RESUMABLE, f"hydra.run.dir={cut}", cwd=tmp_path)
    wait_for(lambda: epochs_done(cut) >= 2, proc)
    time.sleep(0.3)  # into epoch 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    stopped = read_metrics(cut)
    assert stopped["status"] == "interrupted" and stopped["signal"] == "SIGTERM"
    assert stopped["last_completed_epoch"] == epochs_done(cut) >= 2
    assert (cut / "checkpoints" / "interrupted.ckpt").is_file()

    assert run_inprocess("train", f"resume={cut}", cwd=tmp_path) == 0
    resumed, expected = read_metrics(cut), read_metrics(reference)
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert resumed["test"] == expected["test"] and resumed["best"] == expected["best"]
    assert resumed["best_epoch"] == expected["best_epoch"]
    assert [r["epoch"] for r in read_epochs(cut)] == ["1", "2", "3", "4"]
    for column in ("train/loss", "val/loss", "val/acc"):  # the same curve, not just the end
        assert [r[column] for r in read_epochs(cut)] == [r[column] for r in read_epochs(reference)]
    steps = scalar_steps(cut, "val/acc")
    assert len(steps) == 4 and len(set(steps)) == 4  # one TensorBoard point per epoch, no repeat


def test_a_non_finite_loss_stops_the_run_with_status_diverged(tmp_path, capsys):
    run = tmp_path / "run"
    code = run_inprocess(
        "train", *QUICK, "optimizer=sgd", "optimizer.lr=1e6", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0]
    record = read_metrics(run)
    assert record["status"] == "diverged"
    assert record["diverged"]["step"] >= 0 and record["diverged"]["epoch"] == 1
    assert record["diverged"]["loss"] in ("nan", "inf", "-inf")


def test_a_diverging_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    code = run_inprocess(
        "train",
        "-m",
        *QUICK,
        "trainer.max_epochs=1",
        "optimizer=sgd",
        "optimizer.lr=1e6,0.01",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert code == 1
    assert [read_metrics(sweep / j)["status"] for j in ("0", "1")] == ["diverged", "completed"]
    with open(sweep / "summary.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["diverged", "completed"]


def test_an_interrupted_sweep_resumes_keeping_completed_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    grid = [*RESUMABLE, "trainer.max_epochs=2", "seed=1,2,3", f"hydra.sweep.dir={sweep}"]
    proc = start_cli("train", "-m", *grid, cwd=tmp_path)
    wait_for(lambda: epochs_done(sweep / "1") >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    first = read_metrics(sweep / "0")
    assert first["status"] == "completed"
    assert read_metrics(sweep / "1")["status"] == "interrupted"
    assert not (sweep / "2").exists()

    assert run_inprocess("resume-sweep", str(sweep), cwd=tmp_path) == 0
    assert read_metrics(sweep / "0") == first  # kept as it was, not trained again
    assert read_metrics(sweep / "1")["resumed"] == 1
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["status"]) for r in rows] == [
        ("1", "completed"),
        ("2", "completed"),
        ("3", "completed"),
    ]

    # a failed job runs again; its earlier attempt is kept under attempts/
    record = read_metrics(sweep / "2")
    (sweep / "2" / "metrics.json").write_text(json.dumps({**record, "status": "failed"}))
    assert run_inprocess("resume-sweep", str(sweep), cwd=tmp_path) == 0
    assert read_metrics(sweep / "2")["status"] == "completed"
    assert read_metrics(sweep / "2" / "attempts" / "1")["status"] == "failed"
    assert read_metrics(sweep / "0") == first


def run_files(run: Path) -> dict[Path, bytes]:
    """The run's files but Hydra's ``.hydra/`` (rewritten by every invocation on the dir)."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}


def test_resume_from_a_truncated_checkpoint_is_a_clear_error_that_loses_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_inprocess("train", *QUICK, f"hydra.run.dir={run}", cwd=tmp_path) == 0
    record = read_metrics(run)
    (run / "metrics.json").write_text(json.dumps({**record, "status": "interrupted"}))
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    before = run_files(run)
    capsys.readouterr()
    assert run_inprocess("train", f"resume={run}", cwd=tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.ckpt: not a readable checkpoint, truncated or corrupt" in err[0]
    assert run_files(run) == before


def test_last_checkpoint_follows_every_epoch_not_only_the_best(tmp_path):
    run = tmp_path / "run"
    args = [*QUICK, "trainer.max_epochs=3", "optimizer.lr=1e-12"]  # val/acc never improves
    assert run_inprocess("train", *args, f"hydra.run.dir={run}", cwd=tmp_path) == 0
    assert read_metrics(run)["best_epoch"] == 1
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2  # 0-based: the third epoch


def test_deterministic_runs_are_bit_identical(tmp_path):
    records = []
    for name in ("a", "b"):
        run = tmp_path / name
        args = [*QUICK, "trainer.deterministic=true", "augment=basic"]
        assert run_inprocess("train", *args, f"hydra.run.dir={run}", cwd=tmp_path) == 0
        record = read_metrics(run)
        rows = [{k: v for k, v in r.items() if "seconds" not in k} for r in read_epochs(run)]
        records.append((record["best"], record["test"], record["best_epoch"], rows))
    assert records[0] == records[1]


# {tmp}/read_only/sweep: a folder this process may not write (as root without capabilities);
# {tmp}/a_file/sweep: below a file
@pytest.mark.parametrize("place", ["{tmp}/read_only/sweep", "{tmp}/a_file/sweep"])
def test_an_unwritable_sweep_dir_fails_before_any_job(tmp_path, place):
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "read_only").mkdir(mode=0o555)
    place = place.format(tmp=tmp_path)
    done = run_cli(
        "train", "-m", *QUICK, "seed=1,2", f"hydra.sweep.dir={place}", cwd=tmp_path,
        prefix=UNPRIVILEGED,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and f"hydra.sweep.dir={place}: cannot write there" in err[0]


def test_checkpoints_carry_rng_states_and_older_ones_are_still_read():
    """The states travel in the module's checkpoint hooks; a checkpoint written when a callback
    kept them (``callbacks.RngStateCheckpoint``) restores them too, and loses that entry (so
    Lightning does not ask for the callback)."""
    from dlexp.guards import OLD_RNG_STATES_KEY, RNG_STATES_KEY, restore_rng_states, save_rng_states

    checkpoint: dict = {}
    save_rng_states(checkpoint)
    expected = torch.rand(3)
    restore_rng_states(checkpoint)
    assert torch.equal(torch.rand(3), expected)

    older = {"callbacks": {OLD_RNG_STATES_KEY: checkpoint[RNG_STATES_KEY], "other": {}}}
    restore_rng_states(older)
    assert torch.equal(torch.rand(3), expected)
    assert older["callbacks"] == {"other": {}}

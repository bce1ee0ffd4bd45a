"""trainer=ddp: one job in several processes, inside single runs and multiruns alike."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest

from dlexp.distributed import DDP_ENV, JobDDPStrategy, JobLauncher, job_scope, strategy_for
from dlexp.record import RunRecord

from conftest import QUICK, read_epochs, run_cli

DDP_2_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def test_ddp_multirun_gives_one_complete_dir_per_job_and_nothing_else(tmp_path):
    """2 jobs x 2 gloo processes: exactly the sweep's 2 job dirs, each a complete record."""
    proc = run_cli(
        "train",
        "-m",
        *QUICK,
        *DDP_2_CPU,
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=true",  # rank 1's bar is disabled, and must stay quiet
        "seed=1,2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["sweeps"]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()  # no second sweep from rank 1
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    for job, seed in (("0", 1), ("1", 2)):
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert record["status"] == "completed"
        assert f"seed={seed}" in record["overrides"]
        assert record["epochs"] == 1 and 0 <= record["test"]["test/acc"] <= 1
        assert [row["epoch"] for row in read_epochs(sweep / job)] == ["1"]  # written once
        assert f"seed: {seed}" in (sweep / job / "config.yaml").read_text()
        # the accuracy is of both processes' predictions: those the confusion matrix counts
        with open(sweep / job / "confusion_matrix.csv") as f:
            matrix = [[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]]
        total, correct = sum(map(sum, matrix)), sum(row[i] for i, row in enumerate(matrix))
        assert total == record["data"]["test"]
        assert record["test"]["test/acc"] == pytest.approx(correct / total, abs=1e-6)


def test_ddp_names_get_dlexps_launcher_other_strategies_pass_through(tmp_path):
    strategy = strategy_for("ddp", tmp_path, None)
    assert isinstance(strategy, JobDDPStrategy)
    assert strategy_for("ddp_find_unused_parameters_true", tmp_path, None)._ddp_kwargs == {
        "find_unused_parameters": True
    }
    assert strategy_for("ddp_spawn", tmp_path, None) == "ddp_spawn"
    assert strategy_for("auto", tmp_path, None) == "auto"


def test_workers_run_the_jobs_config_never_the_command_line(tmp_path, monkeypatch):
    """Ranks > 0 start from the job's run dir: no Hydra overrides, no -m, no sweep."""
    import pytorch_lightning as pl

    monkeypatch.setattr(sys, "argv", ["dlexp train", "-m", "seed=1,2"])
    trainer = pl.Trainer(
        strategy=strategy_for("ddp", tmp_path / "run", tmp_path / "last.ckpt"),
        accelerator="cpu",
        devices=2,
        logger=False,
        enable_progress_bar=False,
    )
    launcher = trainer.strategy.launcher
    assert isinstance(launcher, JobLauncher) and launcher.num_processes == 2
    assert launcher.worker_command() == [
        sys.executable,
        "-m",
        "dlexp.ddp_worker",
        str(tmp_path / "run"),
        "--checkpoint",
        str(tmp_path / "last.ckpt"),
    ]


def test_job_scope_leaves_no_launch_state_for_the_next_job(tmp_path, monkeypatch):
    """After a job, the next job of the sweep must launch its own workers on a new port."""
    import pytorch_lightning as pl

    for key in DDP_ENV:
        monkeypatch.delenv(key, raising=False)
    trainer = pl.Trainer(
        strategy=strategy_for("ddp", tmp_path, None),
        accelerator="cpu",
        devices=2,
        logger=False,
    )
    with job_scope(trainer):
        os.environ.update(LOCAL_RANK="0", MASTER_PORT="12345", WORLD_SIZE="2")
    assert not any(key in os.environ for key in DDP_ENV)


def test_a_record_of_another_rank_is_never_written(tmp_path):
    record = RunRecord(tmp_path, ["seed=1"], started=0.0)
    record.writes = False
    record.save(status="completed")
    assert not (tmp_path / "metrics.json").exists()
    record.writes = True
    record.save(status="completed")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"


def test_free_gpu_skips_gpus_held_by_other_processes(tmp_path, monkeypatch):
    import fcntl

    from dlexp import distributed

    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(distributed, "_claimed", [])
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / "gpu0.lock", "w") as other:  # another job's process holds GPU 0
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert distributed.claim_free_gpu(tmp_path) == [1]
        assert distributed.claim_free_gpu(tmp_path) == [1]  # kept for this process's next jobs
    distributed._claimed[0][1].close()


def test_free_gpu_without_a_gpu_is_bad_input(tmp_path, monkeypatch):
    from dlexp import distributed
    from dlexp.errors import ConfigError

    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(distributed, "_claimed", [])
    with pytest.raises(ConfigError, match=r"trainer\.devices=free: needs a CUDA GPU"):
        distributed.claim_free_gpu(tmp_path)

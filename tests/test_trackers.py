"""MLflow and W&B: what a run logs there, read back with MLflow's client and W&B's own reader
of its offline run files; a missing package is one line naming dlexp's extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlexp.errors import EXIT_TRAINING_FAILED

from conftest import QUICK, read_epochs, read_metrics, run_inprocess, run_python

TINY = [*QUICK, "trainer.limit_train_batches=3", "trainer.num_sanity_val_steps=0"]


def mlflow_client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def mlflow_runs(store: Path) -> list:
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("dlexp")
    return client.search_runs([experiment.experiment_id])


def val_acc_per_epoch(run_dir: Path) -> list[float]:
    return [float(row["val/acc"]) for row in read_epochs(run_dir)]


def test_mlflow_run_has_the_config_every_epoch_the_test_and_the_artifacts(tmp_path: Path):
    """logger=[tensorboard,mlflow]: both loggers; MLflow's run (in the default local store,
    outputs/mlflow under the working directory) holds the flattened config, val/acc per epoch
    as epochs.csv has it, the final test metrics, metrics.json and the best checkpoint. A
    resumed run continues its MLflow run."""
    run = tmp_path / "run"
    code = run_inprocess(
        "train", *TINY, "trainer.max_epochs=1", "logger=[tensorboard,mlflow]",
        "optimizer.lr=0.002", f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    assert run_inprocess("train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path) == 0
    store = tmp_path / "outputs" / "mlflow"
    [found] = mlflow_runs(store)
    client, run_id = mlflow_client(store), found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert found.data.tags["dlexp.run_dir"] == str(run.resolve())
    params = found.data.params
    assert params["optimizer.lr"] == "0.002" and params["model.name"] == "lenet5"
    assert params["trainer.max_epochs"] == "1" and params["seed"] == "42"  # as it started
    history = sorted(client.get_metric_history(run_id, "val/acc"), key=lambda m: m.step)
    assert len(history) == 2
    assert [m.value for m in history] == pytest.approx(val_acc_per_epoch(run), abs=1e-6)
    metrics = read_metrics(run)
    assert metrics["resumed"] == 1
    assert found.data.metrics["test/acc"] == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)
    saved = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(saved).read_text()) == metrics
    best = Path(metrics["best_checkpoint"]).name
    assert f"checkpoints/{best}" in [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_an_mlflow_multirun_is_one_parent_run_with_a_child_run_per_job(tmp_path: Path):
    """Each child's status follows its metrics.json (a diverged job: FAILED)."""
    sweep, store = tmp_path / "sweep", tmp_path / "store"
    code = run_inprocess(
        "train", "-m", *TINY, "trainer.max_epochs=1", "logger=mlflow", "optimizer.lr=0.002,1e6",
        f"logger.mlflow.tracking_uri={store}", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert code == EXIT_TRAINING_FAILED  # the second job diverges
    assert read_metrics(sweep / "1")["status"] == "diverged"
    runs = mlflow_runs(store)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r is not parent]
    assert parent.data.tags["dlexp.sweep_dir"] == str(sweep.resolve())
    assert parent.info.run_name == "sweep" and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    jobs = sorted((r.info.run_name, r.data.params["optimizer.lr"], r.info.status) for r in children)
    assert jobs == [("sweep/0", "0.002", "FINISHED"), ("sweep/1", "1000000.0", "FAILED")]
    client = mlflow_client(store)
    assert {"summary.csv", "summary.md"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    for child in children:
        assert "metrics.json" in {a.path for a in client.list_artifacts(child.info.run_id)}


def wandb_records(run_file: Path) -> list[dict]:
    """The records of a W&B run's ``.wandb`` log, as W&B's own reader prints them."""
    done = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", str(run_file), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_wandb_runs_offline_one_run_per_job_grouped_by_sweep(tmp_path: Path, monkeypatch):
    """logger=wandb with its defaults logs offline into each job's run dir (no network, no
    login); each job of a multirun is its own W&B run (finished before the next starts) in a
    group named after the sweep, with the config, val/acc per epoch and the test metrics."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no account: offline needs none
    sweep = tmp_path / "sweep"
    code = run_inprocess(
        "train", "-m", *TINY, "logger=wandb", "seed=0,1", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    ids = set()
    for job in ("0", "1"):
        run_dir = sweep / job
        [run_file] = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
        records = wandb_records(run_file)
        [run] = [r["run"] for r in records if r["type"] == "run"]
        assert run["display_name"] == f"sweep/{job}" and run["run_group"] == "sweep"
        ids.add(run["run_id"])
        config = {}
        for r in records:
            if r["type"] == "config":
                config.update(r["config"].get("update", {}))
        assert config["seed"] == int(job) and config["model.name"] == "lenet5"
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        val = [item["val/acc"] for item in history if "val/acc" in item]
        assert val == pytest.approx(val_acc_per_epoch(run_dir), abs=1e-6)
        [test] = [item for item in history if "test/acc" in item]
        assert test["test/acc"] == pytest.approx(
            read_metrics(run_dir)["test"]["test/acc"], abs=1e-6
        )
        [ended] = [r["exit"] for r in records if r["type"] == "exit"]
        assert ended.get("exit_code", 0) == 0
    assert len(ids) == 2


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path: Path, package: str):
    """Found up front, before torch is imported or anything is created (the package is
    hidden from this interpreter as an uninstalled one is)."""
    code = (
        f"import sys\nsys.modules[{package!r}] = None  # as if not installed\n"
        "from dlexp.cli import main\n"
        f"print('exit', main(['train', 'logger=[tensorboard,{package}]']))\n"
    )
    done, heavy = run_python(code, tmp_path)
    assert "exit 2" in done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: dlexp train: logger.{package}: needs the {package} package, which is not "
        f"installed (install it with: pip install 'dlexp[{package}]')"
    ]
    assert "Traceback" not in done.stderr
    assert heavy == []
    assert list(tmp_path.iterdir()) == []

"""Multiruns: one dir per job, failures recorded, summaries and reports that answer the sweep."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dlexp.reports.report import build_report

from conftest import QUICK, read_metrics, run_inprocess


def only_sweep_dir(root: Path) -> Path:
    (sweep,) = (root / "outputs" / "sweeps").iterdir()
    return sweep


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    code = run_inprocess(
        "train",
        "-m",
        *QUICK,
        "trainer.max_epochs=2",
        "model=mlp,lenet5",
        "optimizer.lr=0.001,0.003",
        cwd=root,
    )
    assert code == 0
    return only_sweep_dir(root)


def test_grid_gives_four_runs_and_a_summary_equal_to_their_metrics(grid):
    jobs = sorted(p for p in grid.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    with open(grid / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert list(rows[0])[:4] == ["job", "model", "optimizer.lr", "status"]
    for row in rows:
        m = read_metrics(grid / row["job"])
        assert row["status"] == m["status"] == "completed"
        assert f"model={row['model']}" in m["overrides"]
        assert f"optimizer.lr={row['optimizer.lr']}" in m["overrides"]
        assert float(row["test/acc"]) == pytest.approx(m["test"]["test/acc"], abs=5e-5)
        assert float(row["val/acc"]) == pytest.approx(m["best"]["val/acc"], abs=5e-5)
        assert int(row["epochs"]) == m["epochs"] == 2
    assert "| job | model | optimizer.lr | status |" in (grid / "summary.md").read_text()
    # the jobs ran under dlexp's grid sweeper (no second composition of each job)
    sweeper = OmegaConf.load(grid / "multirun.yaml").hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.dlexp_sweeper.PrecheckedBasicSweeper"


def test_value_sweeps_check_each_job_as_its_own_composition():
    """A job that differs only in values is the shared composition with those values set."""
    from dlexp.preflight import check_command_line

    line = ["model=mlp", "seed=0,1", "optimizer.lr=0.01,0.1", "+experiment=dropout"]
    swept = check_command_line(line, multirun=True).configs
    # the experiment's own grid (model.dropout=0,0.2,0.5) first, then the command line's
    points = [(p, s, lr) for p in (0.0, 0.2, 0.5) for s in (0, 1) for lr in (0.01, 0.1)]
    assert len(swept) == len(points)
    for config, (p, seed, lr) in zip(swept, points, strict=True):
        own = check_command_line(
            [f"model.dropout={p}", f"seed={seed}", f"optimizer.lr={lr}", "+experiment=dropout"]
        ).configs[0]
        assert (config.model.dropout, config.seed, config.optimizer.lr) == (p, seed, lr)
        assert config == own


def test_hparams_dashboard_carries_the_final_metrics(grid):
    run = grid / "0"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"hp/test_acc", "hp/best_val_acc"} <= metric_tags
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.name"].string_value == "mlp"
    metrics = read_metrics(run)
    assert events.Scalars("hp/test_acc")[-1].value == pytest.approx(metrics["test"]["test/acc"])
    assert events.Scalars("hp/best_val_acc")[-1].value == pytest.approx(metrics["best"]["val/acc"])
    assert "train/samples" in events.Tags()["images"]


def test_report_of_several_runs_writes_into_a_new_report_dir_not_the_cwd(grid, tmp_path, capsys):
    runs = sorted(str(p) for p in grid.iterdir() if (p / "metrics.json").is_file())[:2]
    assert run_inprocess("report", *runs, cwd=tmp_path) == 0
    (report,) = (tmp_path / "outputs" / "reports").iterdir()
    assert f"report: outputs/reports/{report.name}/report.md" in capsys.readouterr().out
    assert {"report.md", "summary.csv", "groups.csv"} <= {p.name for p in report.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # nothing else in the cwd


def test_report_writes_plots_of_the_expected_size(grid, tmp_path):
    report = build_report([grid], tmp_path)
    text = report.read_text()
    for name, size in (
        ("learning_curves.png", (1200, 450)),
        ("final_metric.png", (600, 450)),
        ("heatmap.png", None),
    ):
        path = tmp_path / name
        assert path.stat().st_size > 5_000, name
        assert f"]({name})" in text
        if size:
            assert Image.open(path).size == size
    assert "4 runs in 4 configurations, varying model, optimizer.lr." in text


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    code = run_inprocess(
        "train",
        "-m",
        *QUICK,
        "+callbacks.boom._target_=conftest.ExplodeAtEpoch",
        "+callbacks.boom.epoch=2,99",
        cwd=tmp_path,
    )
    assert code == 1
    assert "sweep: 1 of 2 completed, 1 failed" in capsys.readouterr().err
    sweep = only_sweep_dir(tmp_path)
    failed, completed = read_metrics(sweep / "0"), read_metrics(sweep / "1")
    assert failed["status"] == "failed" and "exploding at epoch 2" in failed["error"]
    assert failed["epochs"] == 1
    assert completed["status"] == "completed"
    with open(sweep / "summary.csv", newline="") as f:
        statuses = {
            r[
                "+callbacks.boom.epoch" if "+callbacks.boom.epoch" in r else "callbacks.boom.epoch"
            ]: r["status"]
            for r in csv.DictReader(f)
        }
    assert statuses == {"2": "failed", "99": "completed"}


def _fake_run(path: Path, overrides: list[str], test_acc: float, status="completed") -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(
        json.dumps(
            {
                "status": status,
                "overrides": overrides,
                "epochs": 3,
                "best_epoch": 2,
                "best": {"val/acc": test_acc + 0.01},
                "test": {"test/acc": test_acc},
                "wall_seconds": 1.0,
            }
        )
    )
    (path / "epochs.csv").write_text("epoch,val/acc,val/loss\n1,0.5,1.0\n2,0.7,0.8\n3,0.8,0.6\n")


def test_report_groups_seeds_into_mean_std_n(tmp_path):
    accs = {
        ("0.0", "0"): 0.91,
        ("0.0", "1"): 0.93,
        ("0.0", "2"): 0.96,
        ("0.5", "0"): 0.88,
        ("0.5", "1"): 0.90,
        ("0.5", "2"): 0.85,
    }
    for i, ((p, seed), acc) in enumerate(accs.items()):
        _fake_run(tmp_path / "sweep" / str(i), [f"model.dropout={p}", f"seed={seed}"], acc)
    _fake_run(tmp_path / "sweep" / "6", ["model.dropout=0.5", "seed=3"], 0.0, status="failed")
    build_report([tmp_path / "sweep"], tmp_path / "out")
    with open(tmp_path / "out" / "groups.csv", newline="") as f:
        groups = {r["model.dropout"]: r for r in csv.DictReader(f)}
    for p in ("0.0", "0.5"):
        values = [acc for (q, _), acc in accs.items() if q == p]
        expected = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
        assert groups[p]["test/acc"] == expected
        assert groups[p]["n"] == "3"
    assert groups["0.5"]["failed"] == "1" and groups["0.0"]["failed"] == "0"
    assert "**Best test/acc: model.dropout=0.0**" in (tmp_path / "out" / "report.md").read_text()


def test_report_groups_folds_and_seeds_like_seeds(tmp_path):
    accs = {(fold, seed): 0.8 + 0.01 * fold + 0.002 * seed for fold in range(3) for seed in (0, 1)}
    for lr in ("0.1", "0.01"):
        for i, ((fold, seed), acc) in enumerate(accs.items()):
            overrides = [f"optimizer.lr={lr}", "data.folds=3", f"data.fold={fold}", f"seed={seed}"]
            _fake_run(tmp_path / "sweep" / f"{lr}_{i}", overrides, acc + float(lr))
    build_report([tmp_path / "sweep"], tmp_path / "out")
    with open(tmp_path / "out" / "groups.csv", newline="") as f:
        groups = {r["optimizer.lr"]: r for r in csv.DictReader(f)}
    assert set(groups) == {"0.1", "0.01"}  # neither the fold nor the seed is a factor
    for lr, row in groups.items():
        values = [acc + float(lr) for acc in accs.values()]
        assert row["n"] == "6"  # 3 folds x 2 seeds
        assert row["test/acc"] == f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def test_report_command_errors_are_one_line(tmp_path, capsys):
    from dlexp.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 2
    assert main(["report", str(tmp_path), "--metric", "val/zzz"]) == 2
    assert main(["report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "nope: no such directory" in err[0]
    assert "--metric=val/zzz: must be one of: val/acc" in err[1]
    assert "the following arguments are required: paths" in err[2]


def test_launcher_configs_compose():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dlexp.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        slurm = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
        local = compose("config", ["hydra/launcher=parallel"], return_hydra_config=True)
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert slurm.hydra.launcher.gpus_per_node == 1
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")


@pytest.mark.slow
def test_parallel_launcher_runs_jobs_in_processes(tmp_path):
    from conftest import run_cli

    done = run_cli(
        "train",
        "-m",
        "hydra/launcher=parallel",
        *QUICK,
        "trainer.max_epochs=1",
        "model=mlp,lenet5",
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    sweep = only_sweep_dir(tmp_path)
    assert [read_metrics(sweep / j)["status"] for j in ("0", "1")] == ["completed"] * 2
    assert "sweep: 2 of 2 completed" in done.stderr

"""The ready-made experiments of ``conf/experiment/``: they compose, expand to the grid their
header promises, switch datasets with one override, and run end to end."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from dlexp.config import CONF_DIR, register_configs, to_dictconfig
from dlexp.preflight import check_command_line
from dlexp.reports.report import build_report
from dlexp.reports.runs import read_run

from conftest import QUICK, run_inprocess

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
COURSE = [e for e in EXPERIMENTS if not e.startswith(("transfer_", "speedrun_"))]

# The grid of each experiment: the key(s) it sweeps and the number of jobs.
GRIDS = {
    "dropout": (["model.dropout"], 3),
    "batchnorm": (["model.norm", "optimizer.lr"], 6),
    "l2": (["regularization.l2"], 5),
    "early_stopping": (["callbacks", "seed"], 6),
    "activations": (["model.activation"], 4),
    "pooling": (["model.pooling", "seed"], 6),
    "architectures": (["model", "seed"], 6),
    "plain_vs_residual": (["model", "model.residual"], 4),
    "data_size": (["data.train_samples"], 4),
    "seeds": (["seed"], 5),
    "semi_supervised": (["semi.weight", "seed"], 6),
    "transfer_mnist": (["+experiment/transfer_policy", "seed"], 15),
    "transfer_mnist_pretrain": ([], 1),
    "speedrun_cifar10": ([], 1),
    "speedrun_mnist": ([], 1),
}

# The experiments whose effect shows on real images only (README: Measured on digits).
DATASETS = {"architectures": "mnist", "pooling": "fashion_mnist"}


@pytest.fixture(scope="module", autouse=True)
def _schemas(tmp_path_factory):
    """Register the schemas; run where transfer_mnist's source (step 1's run dir) exists."""
    register_configs()
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "outputs" / "transfer" / "mnist_pretrain").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        yield


_COMPOSED: dict[tuple[str, ...], list] = {}


def compose(*overrides: str) -> list:
    """The validated configs of ``dlexp train -m OVERRIDES`` (cached: composing is slow)."""
    if overrides not in _COMPOSED:
        _COMPOSED[overrides] = check_command_line(list(overrides), multirun=True).configs
    return _COMPOSED[overrides]


def _fingerprint(cfg) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)


def _sweep_params(name: str) -> dict[str, str]:
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    params = (yaml.safe_load(text).get("hydra") or {}).get("sweeper", {}).get("params") or {}
    return {k: str(v) for k, v in params.items()}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_states_its_grid(name):
    keys, jobs = GRIDS[name]
    params = _sweep_params(name)
    assert list(params) == keys
    assert math.prod(len(v.split(",")) for v in params.values()) == jobs
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    if name in COURSE:
        assert f"dlexp train -m +experiment={name}" in text
        assert "Expected:" in text and "Read:" in text
        stated = re.search(r"# (\d+) jobs", text)
        assert stated and int(stated.group(1)) == jobs


@pytest.mark.parametrize("name", COURSE)
def test_course_experiment_composes_into_its_grid(name):
    keys, jobs = GRIDS[name]
    configs = compose(f"+experiment={name}")
    assert len(configs) == jobs
    assert len({_fingerprint(c) for c in configs}) == jobs  # every point differs
    for key in keys:
        assert len({str(OmegaConf.select(to_dictconfig(c), key)) for c in configs}) > 1, key
    assert {c.data.name for c in configs} == {DATASETS.get(name, "digits")}


@pytest.mark.parametrize("name", ["transfer_mnist_pretrain", "transfer_mnist"])
def test_transfer_experiment_composes(name):
    (cfg,) = check_command_line([f"+experiment={name}"]).configs
    assert cfg.data.name == "mnist" and cfg.model.name == "lenet5"


@pytest.mark.parametrize(
    ("name", "data"), [("speedrun_cifar10", "cifar10"), ("speedrun_mnist", "mnist")]
)
def test_speedrun_experiment_composes(name, data):
    (cfg,) = check_command_line([f"+experiment={name}"]).configs
    assert cfg.data.name == data and cfg.model.name == "speednet"


def test_sweep_values_are_the_documented_ones():
    def values(name, key):
        return sorted(
            {str(OmegaConf.select(to_dictconfig(c), key)) for c in compose(f"+experiment={name}")}
        )

    assert values("dropout", "model.dropout") == ["0", "0.2", "0.5"]
    assert values("batchnorm", "optimizer.lr") == ["0.01", "0.05", "0.3"]
    assert values("batchnorm", "model.norm") == ["batch", "none"]
    assert values("plain_vs_residual", "model.residual") == ["False", "True"]
    assert values("architectures", "model.name") == ["lenet5", "mlp"]
    assert values("architectures", "data.train_samples") == ["5000"]
    assert values("pooling", "model.pooling") == ["avg", "max"]
    assert values("pooling", "data.train_samples") == ["5000"]
    assert values("data_size", "data.train_samples") == ["100", "1000", "300", "None"]
    assert values("l2", "regularization.l2") == ["0.0", "1.0", "10.0", "100.0", "1000.0"]


def test_glob_selects_every_experiment_once_and_mnist_is_one_override():
    """Hydra builds the sweep from the command line alone: with several experiments selected
    by glob, each runs once with its fixed keys, not its own grid. ``data=mnist`` switches
    every experiment to MNIST at its native 28 px."""
    configs = compose("+experiment=glob(*,exclude=[transfer_*,speedrun_*])", "data=mnist")
    assert len(configs) == len(COURSE)
    assert sorted(c.trainer.max_epochs for c in configs) == sorted(
        compose(f"+experiment={n}")[0].trainer.max_epochs for n in COURSE
    )
    dropout = [
        c for c in configs if list(getattr(c.model, "hidden_sizes", None) or []) == [512, 512]
    ]
    assert len(dropout) == 1 and dropout[0].data.train_samples == 300
    assert dropout[0].model.dropout == 0.0  # the model's default, not the grid's values
    assert {c.data.name for c in configs} == {"mnist"}
    assert all(c.data.image_size is None for c in configs)


def test_architectures_grid_takes_more_models_from_the_command_line():
    """The header's advice for a GPU: the command line's ``model=`` replaces the file's."""
    configs = compose("+experiment=architectures", "model=mlp,lenet5,resnet20")
    assert len(configs) == 9
    assert sorted({c.model.name for c in configs}) == ["lenet5", "mlp", "resnet20"]
    assert {c.data.name for c in configs} == {"mnist"}


@pytest.mark.parametrize("name", ["data_size", "plain_vs_residual"])
def test_grid_composes_on_mnist(name):
    configs = compose(f"+experiment={name}", "data=mnist")
    assert len(configs) == GRIDS[name][1]
    assert {c.data.name for c in configs} == {"mnist"}


def test_dropout_experiment_runs_end_to_end_and_reports_the_gap(tmp_path):
    code = run_inprocess(
        "train", "-m", "+experiment=dropout", *QUICK, "trainer.max_epochs=2", cwd=tmp_path
    )
    assert code == 0
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    with open(sweep / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["model.dropout"] for r in rows) == ["0", "0.2", "0.5"]
    for row in rows:
        run = read_run(sweep / row["job"])
        assert row["status"] == "completed" and run.metrics["data"]["train"] == 300
        last = run.epochs[-1]
        assert int(last["epoch"]) == 2
        assert float(row["gap"]) == pytest.approx(last["train/acc"] - last["val/acc"], abs=1e-4)
        assert float(row["train/loss"]) == pytest.approx(last["train/loss"], abs=1e-4)
    build_report([sweep], target=0.0)
    with open(sweep / "groups.csv", newline="") as f:
        groups = list(csv.DictReader(f))
    assert len(groups) == 3
    assert all(g["epochs_to_0"] == "1.0 ± 0.0" and g["epochs"] == "2.0 ± 0.0" for g in groups)


def _fake_run(path: Path, seed: int, val_accs: list[float]) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "overrides": [f"seed={seed}"],
                "epochs": len(val_accs),
                "best": {"val/acc": max(val_accs)},
                "test": {"test/acc": 0.5},
                "wall_seconds": 10.0 * (seed + 1),
            }
        )
    )
    lines = ["epoch,train/acc,train/loss,val/acc"]
    lines += [f"{i},{a + 0.05},0.1,{a}" for i, a in enumerate(val_accs, 1)]
    (path / "epochs.csv").write_text("\n".join(lines) + "\n")


def test_report_counts_epochs_to_target_and_runs_that_never_reach_it(tmp_path):
    _fake_run(tmp_path / "s" / "0", 0, [0.5, 0.8, 0.9, 0.95])
    _fake_run(tmp_path / "s" / "1", 1, [0.6, 0.9, 0.92])
    _fake_run(tmp_path / "s" / "2", 2, [0.5, 0.6, 0.7])
    build_report([tmp_path / "s"], tmp_path / "out", target=0.9)
    with open(tmp_path / "out" / "groups.csv", newline="") as f:
        (group,) = csv.DictReader(f)
    assert group["epochs_to_0.9"] == "2.5 ± 0.7 (2/3 runs)"  # epochs 3 and 2; run 2 never
    assert group["wall_s"] == "20.0 ± 10.0"
    assert group["gap"] == "0.0500 ± 0.0000"
    build_report([tmp_path / "s" / "2"], tmp_path / "out2", target=0.9)
    with open(tmp_path / "out2" / "groups.csv", newline="") as f:
        assert next(csv.DictReader(f))["epochs_to_0.9"] == "never"

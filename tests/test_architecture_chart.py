"""How to choose an architecture: runs record their MACs, parameters and training images/s,
and ``dlexp report`` on a sweep over ``model`` plots accuracy against MACs (marker area
proportional to the parameters) from exactly those records."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from dlexp.errors import InputError
from dlexp.reports.architecture import LARGEST_MARKER, architecture_points, bubble_figure
from dlexp.reports.report import build_report, group_runs
from dlexp.reports.runs import find_runs

from conftest import QUICK, run_inprocess

MODELS = ("lenet5", "mlp")
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real sweep: model = mlp, lenet5 x seed 0, 1 on digits, one short epoch each."""
    cwd = tmp_path_factory.mktemp("arch")
    code = run_inprocess(
        "train",
        "-m",
        f"model={','.join(MODELS)}",
        f"seed={','.join(map(str, SEEDS))}",
        *QUICK,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "logger=none",
        cwd=cwd,
    )
    assert code == 0
    (path,) = (cwd / "outputs" / "sweeps").iterdir()
    return path


def _records(sweep: Path) -> dict[str, list[dict]]:
    """Each model's metrics.json records, read straight from the job dirs."""
    by_model: dict[str, list[dict]] = {}
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            record = json.loads((job / "metrics.json").read_text())
            model = next(o.split("=")[1] for o in record["overrides"] if o.startswith("model="))
            by_model.setdefault(model, []).append(record)
    return by_model


def test_a_run_records_its_macs_parameters_and_training_throughput(sweep):
    """The MLP's MACs are its three matrix products (1024 inputs at 32 px: 256, 128, 10
    units), its parameters those plus the biases; images/s = images / training seconds."""
    (record, *_) = _records(sweep)["mlp"]
    macs = 32 * 32 * 256 + 256 * 128 + 128 * 10
    assert record["macs_per_image"] == macs
    assert record["num_params"] == macs + 256 + 128 + 10
    throughput = record["throughput"]
    assert throughput["train_images"] == 4 * 64  # 4 batches of digits' 64 images
    assert 0 < throughput["train_seconds"] < record["wall_seconds"]
    rate = throughput["train_images"] / throughput["train_seconds"]
    assert throughput["images_per_s"] == pytest.approx(rate, rel=0.01)


def test_the_bubble_chart_plots_the_runs_records(sweep):
    report = build_report([sweep])
    out = report.parent
    assert "![architectures](architectures.png)" in report.read_text()
    assert (out / "architectures.png").stat().st_size > 0
    with open(out / "architectures.csv", newline="") as f:
        table = {row["config"]: row for row in csv.DictReader(f)}
    assert sorted(table) == sorted(MODELS)
    for model, records in _records(sweep).items():
        row = table[model]
        accs = [r["test"]["test/acc"] for r in records]
        assert int(row["n"]) == len(SEEDS)
        assert float(row["mean"]) == pytest.approx(statistics.fmean(accs))
        assert float(row["std"]) == pytest.approx(statistics.stdev(accs))
        assert int(row["macs"]) == records[0]["macs_per_image"]
        assert int(row["params"]) == records[0]["num_params"]
        walls = [r["wall_seconds"] for r in records]
        assert float(row["wall_s"]) == pytest.approx(statistics.fmean(walls))
        rates = [r["throughput"]["images_per_s"] for r in records]
        assert float(row["images_per_s"]) == pytest.approx(statistics.fmean(rates))

    # what the figure draws: x = MACs, y = mean accuracy, marker area proportional to params
    points = architecture_points(group_runs(find_runs([sweep]))[1], "test/acc")
    scatter = bubble_figure(points, "test/acc").axes[0].collections[0]
    for (x, y), area, point in zip(scatter.get_offsets(), scatter.get_sizes(), points, strict=True):
        assert (x, y) == pytest.approx((float(table[point.config]["macs"]), point.mean))
        assert area == pytest.approx(LARGEST_MARKER * point.params / max(p.params for p in points))
    params = {p.config: p.params for p in points}
    assert params["mlp"] > 4 * params["lenet5"]  # so the areas differ visibly


def _fake_run(path: Path, model: str, macs, params: int, acc: float) -> None:
    path.mkdir(parents=True)
    record = {
        "status": "completed",
        "overrides": [f"model.pooling={model}"],
        "test": {"test/acc": acc},
        "num_params": params,
        "macs_per_image": macs,
        "wall_seconds": 1.0,
    }
    (path / "metrics.json").write_text(json.dumps(record))
    (path / "epochs.csv").write_text(f"epoch,val/acc\n1,{acc}\n")


def test_a_sweep_of_equal_cost_gets_no_architecture_chart(tmp_path):
    _fake_run(tmp_path / "s" / "0", "max", 1000, 50, 0.9)
    _fake_run(tmp_path / "s" / "1", "avg", 1000, 50, 0.8)
    report = build_report([tmp_path / "s"])
    assert "architectures" not in report.read_text()
    assert not (tmp_path / "s" / "architectures.png").exists()


def test_a_record_whose_macs_are_not_a_number_is_refused(tmp_path):
    _fake_run(tmp_path / "s" / "0", "max", "many", 50, 0.9)
    with pytest.raises(InputError, match="macs_per_image is a str"):
        build_report([tmp_path / "s"])

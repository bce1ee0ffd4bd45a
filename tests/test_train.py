"""`dlexp train` end to end on the embedded digits data."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUICK, only_run_dir, read_epochs, read_metrics, run_cli, run_inprocess


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default experiment, shortened to 8 epochs."""
    root = tmp_path_factory.mktemp("default")
    code = run_inprocess("train", *QUICK, "trainer.max_epochs=8", cwd=root)
    assert code == 0
    return only_run_dir(root)


def test_default_training_learns_digits(default_run):
    metrics = read_metrics(default_run)
    assert metrics["status"] == "completed"
    assert metrics["best"]["val/acc"] >= 0.90
    assert metrics["test"]["test/acc"] >= 0.85


def test_metrics_json_has_every_field_with_sane_values(default_run):
    m = read_metrics(default_run)
    assert m["epochs"] == 8
    assert 1 <= m["best_epoch"] <= 8
    assert m["monitor"] == {"metric": "val/acc", "mode": "max"}
    assert set(m["best"]) == {"val/acc", "val/f1", "val/loss"}
    assert set(m["test"]) == {"test/acc", "test/f1", "test/loss"}
    assert all(0 <= m["test"][k] <= 1 for k in ("test/acc", "test/f1"))
    assert m["num_params"] == 61_706  # LeNet-5 on 1x32x32 with 10 classes
    assert 0 < m["wall_seconds"] < 600
    assert set(m["versions"]) >= {"dlexp", "torch", "pytorch_lightning"}
    assert "trainer.max_epochs=8" in m["overrides"]
    assert m["data"] == {
        "train": 1257,
        "val": 270,
        "test": 270,
        "num_classes": 10,
        "image_size": 32,
        "in_channels": 1,
        "class_names": [str(d) for d in range(10)],
    }
    best_ckpt = default_run / "checkpoints" / f"epoch{m['best_epoch']:03d}.ckpt"
    assert m["best_checkpoint"] == str(best_ckpt.relative_to(default_run))  # portable
    assert best_ckpt.is_file()
    assert (default_run / "checkpoints" / "last.ckpt").is_file()


def test_run_dir_layout(default_run):
    for name in (
        "config.yaml",
        "train.log",
        "epochs.csv",
        "confusion_matrix.csv",
        ".hydra/overrides.yaml",
    ):
        assert (default_run / name).is_file(), name
    rows = (default_run / "epochs.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and "val/acc" in rows[0] and "lr" in rows[0]
    assert len(rows) == 1 + 8
    matrix = [
        r.split(",")[1:]
        for r in (default_run / "confusion_matrix.csv").read_text().splitlines()[1:]
    ]
    assert sum(int(v) for row in matrix for v in row) == 270  # every test image counted once


def test_epoch_metrics_are_that_epochs_own(default_run):
    """The last epoch's val/acc and val/loss are the final weights' scores on the val split.

    Metrics are accumulated over an epoch and reset after it: a mean over several epochs
    (metrics never reset) or over part of one would not match.
    """
    from dlexp.checkpoints import lightning_state_dict, restore_module, safe_load
    from dlexp.data import build_datamodule
    from dlexp.run_config import saved_config

    cfg = saved_config(default_run)
    data = build_datamodule(cfg.data, seed=cfg.seed)
    data.setup("fit")
    ckpt = default_run / "checkpoints" / "last.ckpt"  # the weights after the last epoch
    state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
    module = restore_module(
        cfg.model,
        state,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        key="ckpt",
        shown=str(ckpt),
    ).eval()
    images, labels = data.val_split.images, data.val_split.labels
    with torch.no_grad():
        logits = module(images)
    last = read_epochs(default_run)[-1]
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert float(last["val/acc"]) == pytest.approx(accuracy, abs=1e-6)
    loss = F.cross_entropy(logits, labels).item()
    assert float(last["val/loss"]) == pytest.approx(loss, abs=1e-5)
    # and the epochs differ: each row holds its own epoch's scores
    assert len({row["val/loss"] for row in read_epochs(default_run)}) == 8


def test_tensorboard_event_file_holds_train_and_val_scalars(default_run):
    events = EventAccumulator(str(default_run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "val/acc", "val/loss", "test/acc"} <= set(tags["scalars"])
    assert len(events.Scalars("val/acc")) == 8
    assert "test/confusion_matrix" in tags["images"]


def test_same_seed_gives_identical_metrics_and_seeds_differ(tmp_path):
    results = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        root = tmp_path / name
        root.mkdir()
        assert run_inprocess("train", *QUICK, f"seed={seed}", cwd=root) == 0
        m = read_metrics(only_run_dir(root))
        results[name] = (m["best"], m["test"])
    assert results["a"] == results["b"]
    assert results["a"] != results["c"]  # seed=0 is honoured, not treated as "no seed"


def test_two_runs_in_one_process_get_separate_directories(tmp_path):
    for _ in range(2):
        assert run_inprocess("train", *QUICK, "trainer.max_epochs=1", cwd=tmp_path) == 0
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2


def test_multirun_gives_one_directory_per_job(tmp_path):
    code = run_inprocess(
        "train", "-m", *QUICK, "trainer.max_epochs=1", "model=mlp,lenet5", cwd=tmp_path
    )
    assert code == 0
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert [read_metrics(j)["overrides"][-1] for j in jobs] == ["model=mlp", "model=lenet5"]


def test_cli_as_a_real_process(tmp_path):
    """Console entry, `python -m dlexp`, `--cfg job` and `--help` behave as Hydra apps do."""
    shown = run_cli("train", "--cfg", "job", "model=mlp", "seed=0", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "name: mlp" in shown.stdout and "seed: 0" in shown.stdout
    assert not (tmp_path / "outputs").exists()
    helped = run_cli("train", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    model_line = next(line for line in helped.stdout.splitlines() if line.startswith("model: "))
    assert {"lenet5", "mlp", "resnet18"} <= set(model_line[len("model: ") :].split(", "))


def test_hydra_override_grammar(tmp_path):
    """`+key` adds to open groups, `~key` removes, `group=option` swaps, run dir is settable."""
    run_dir = tmp_path / "my-run"
    code = run_inprocess(
        "train",
        *QUICK,
        "trainer.max_epochs=1",
        "optimizer=sgd",
        "~callbacks.lr_monitor",
        "+callbacks.timer._target_=pytorch_lightning.callbacks.Timer",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert code == 0
    config = (run_dir / "config.yaml").read_text()
    assert "torch.optim.SGD" in config and "lr_monitor" not in config and "Timer" in config
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"

"""A training step reads nothing back from its device: values reach Python at refresh points.

Every conversion of a tensor to a Python value (``item``, ``bool``, ``float``, ``int``,
``tolist``, ``cpu``, ``numpy``) waits for the device's queue on a GPU. The steps of a fit
must not make any: the divergence check reads its losses every ``log_every_n_steps`` steps,
metrics are read at epoch ends, the progress bar when it redraws.
"""

from __future__ import annotations

import collections
import functools
import sys

import pytest
import torch

from conftest import QUICK, PoisonAtStep, read_metrics, run_inprocess

CONVERSIONS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy")
COUNTED = ("/dlexp/", "/pytorch_lightning/", "/lightning_fabric/", "/torchmetrics/")


@pytest.fixture
def conversions(monkeypatch):
    """Counts conversions called from dlexp, Lightning or torchmetrics code, by call site
    (torch's own, such as its optimizers' step counters kept on the CPU, are not counted)."""
    sites: collections.Counter[str] = collections.Counter()

    def counting(name, original):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code
            if any(part in caller.co_filename for part in COUNTED):
                sites[f"{caller.co_filename.rsplit('/', 2)[-1]}:{caller.co_name}:{name}"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in CONVERSIONS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return sites


def _fit(tmp_path, name: str, batch_size: int, sites) -> tuple[int, int]:
    """(conversions, training steps) of a 2-epoch fit, progress bar and logger on."""
    sites.clear()
    run = tmp_path / name
    code = run_inprocess(
        "train",
        f"hydra.run.dir={run}",
        "model=mlp",
        "model.hidden_sizes=[16]",
        f"data.batch_size={batch_size}",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=10",
        cwd=tmp_path,
    )
    assert code == 0 and read_metrics(run)["status"] == "completed"
    steps = 2 * -(-read_metrics(run)["data"]["train"] // batch_size)
    return sum(sites.values()), steps


def test_training_steps_read_values_only_at_refresh_points(tmp_path, monkeypatch, conversions):
    import dlexp.trainer
    from dlexp.progress import ProgressBar

    # a bar that redraws only at each loop's first and last batch: its reads are per loop
    slow_bar = functools.partial(ProgressBar, refresh_per_second=1e-9)
    monkeypatch.setattr(dlexp.trainer, "ProgressBar", slow_bar)

    few, few_steps = _fit(tmp_path, "few", 64, conversions)
    few_sites = dict(conversions)
    many, many_steps = _fit(tmp_path, "many", 8, conversions)
    assert many_steps >= 300 and many_steps - few_steps >= 250
    # the divergence check reads once per 10 steps; nothing else grows with the steps
    allowed = (many_steps - few_steps) / 10 + 6
    grown = {k: v - few_sites.get(k, 0) for k, v in conversions.items() if v != few_sites.get(k)}
    assert many - few <= allowed, f"conversions grew with the steps: {grown!s}"
    # ... and the divergence check does read them: a non-finite loss is still caught
    assert 0 < conversions["guards.py:check:__bool__"] <= many_steps / 10 + 4


@pytest.mark.parametrize(
    ("poisoned_step", "extra"),
    [
        (3, []),
        (12, []),
        # the last batch of epoch 1, and no validation in epoch 1: caught at the epoch's end
        (78, ["trainer.check_val_every_n_epoch=2"]),
    ],
)
def test_a_diverged_run_stops_within_log_every_n_steps_naming_the_first_bad_step(
    tmp_path, poisoned_step, extra
):
    """The loss is checked every 5 steps (and at each epoch's end): the run stops by the next
    check, records the step whose loss first was NaN, and writes no checkpoint of the NaN
    weights and no row of the epoch they end."""
    run = tmp_path / "run"
    code = run_inprocess(
        "train",
        *QUICK,
        "model=mlp",
        "data.batch_size=16",  # 79 steps per epoch
        "trainer.log_every_n_steps=5",
        f"+callbacks.poison._target_={PoisonAtStep.__module__}.PoisonAtStep",
        f"+callbacks.poison.step={poisoned_step}",
        f"hydra.run.dir={run}",
        *extra,
        cwd=tmp_path,
    )
    assert code == 1
    record = read_metrics(run)
    assert record["status"] == "diverged"
    # Lightning's global_step at the end of the batch counts that batch's optimizer step
    assert record["diverged"] == {"step": poisoned_step + 1, "epoch": 1, "loss": "nan"}
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    assert not (run / "epochs.csv").exists()


def test_a_callback_group_calls_each_hook_on_its_implementers_in_order():
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelSummary, Timer

    from dlexp.callbacks import CallbackGroup

    calls = []

    class Ends(pl.Callback):
        def __init__(self, name):
            self.name = name

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            calls.append((self.name, "batch_end", outputs, batch_idx))

    class Starts(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            calls.append(("starts", "fit_start"))

    group = CallbackGroup([Ends("a"), Starts(), Ends("b")])
    group.on_train_batch_end("trainer", "module", "out", "batch", 7)
    group.on_fit_start("trainer", "module")
    assert calls == [
        ("a", "batch_end", "out", 7),
        ("b", "batch_end", "out", 7),
        ("starts", "fit_start"),
    ]
    # hooks no member implements stay Lightning's no-op: one call, nothing done
    assert type(group).on_validation_batch_end is pl.Callback.on_validation_batch_end
    assert "on_validation_batch_end" not in vars(group)
    with pytest.raises(ValueError, match="Timer saves state"):
        CallbackGroup([Timer()])
    with pytest.raises(ValueError, match="ModelSummary is found by its type"):
        CallbackGroup([ModelSummary()])


def test_gather_groups_what_can_join_and_keeps_the_rest_in_order():
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from dlexp.callbacks import CallbackGroup

    class Own(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            pass

    own, monitor = Own(), LearningRateMonitor()
    best, stopper = ModelCheckpoint(monitor="val/acc", mode="max"), EarlyStopping("val/loss")
    gathered = CallbackGroup.gather([own], [best, monitor, stopper])
    # the checkpoint and early stopping are found by Lightning by their type (and save state)
    assert gathered[1:] == [best, stopper]
    assert isinstance(gathered[0], CallbackGroup)
    assert gathered[0].members == [own, monitor]

"""Optimizers and schedules: every pair composes and trains; each schedule has its shape."""

from __future__ import annotations

import functools
import itertools

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlexp.config import register_configs
from dlexp.config.scheduler import scheduler_factory
from dlexp.errors import ConfigError
from dlexp.module import ClassificationModule
from dlexp.preflight import check_command_line

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "multistep", "cosine", "onecycle", "plateau")
EXPECTED = {
    "none": None,
    "step": torch.optim.lr_scheduler.StepLR,
    "multistep": torch.optim.lr_scheduler.MultiStepLR,
    "cosine": torch.optim.lr_scheduler.SequentialLR,
    "onecycle": torch.optim.lr_scheduler.OneCycleLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}


@functools.cache
def composed(*overrides: str):
    register_configs()
    return check_command_line(list(overrides)).configs[0]


def loader(n: int = 16, shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.rand((n, 1, 4, 4), generator=g)
    return DataLoader(TensorDataset(images, torch.arange(n) % 3), batch_size=8, shuffle=shuffle)


def fit(module: pl.LightningModule, tmp_path, **trainer_args) -> pl.Trainer:
    args = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
                default_root_dir=str(tmp_path))  # fmt: skip
    trainer = pl.Trainer(**{**args, **trainer_args})
    trainer.fit(module, loader(), loader())
    return trainer


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_and_schedule_compose_and_train_a_step(optimizer, scheduler, tmp_path):
    fits = {"step": ["scheduler.step_size=2"], "multistep": ["scheduler.milestones=[1,2]"]}
    cfg = composed(
        f"optimizer={optimizer}", f"scheduler={scheduler}", "trainer.max_epochs=3",
        *fits.get(scheduler, []),
    )  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    before = model[1].weight.detach().clone()
    module = ClassificationModule(
        model,
        nn.Identity(),
        3,
        instantiate(cfg.optimizer),
        scheduler=scheduler_factory(cfg.scheduler),
    )
    trainer = fit(module, tmp_path, max_epochs=cfg.trainer.max_epochs, limit_train_batches=1)
    assert trainer.global_step == 3
    assert not torch.equal(before, model[1].weight)
    assert type(trainer.optimizers[0]).__name__.lower() == optimizer
    configs = trainer.lr_scheduler_configs
    if EXPECTED[scheduler] is None:
        assert configs == []
    else:
        assert isinstance(configs[0].scheduler, EXPECTED[scheduler])


def lrs_of(cfg_overrides: list[str], steps: int, max_epochs: int, lr: float = 1.0) -> list[float]:
    """The rate before each of ``steps`` optimizer steps (schedule stepped per step)."""
    cfg = composed(*cfg_overrides)
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    build = scheduler_factory(cfg.scheduler)
    schedule = build(optimizer, total_steps=steps, max_epochs=max_epochs)["scheduler"]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_cosine_warms_up_linearly_then_anneals_to_min_lr():
    rates = lrs_of(["scheduler=cosine", "scheduler.warmup_epochs=2", "scheduler.min_lr=0.01"],
                   steps=100, max_epochs=10)  # fmt: skip
    # 10 steps per epoch: warmup over 20 steps from 0.1·lr to lr, linear
    assert rates[0] == pytest.approx(0.1)
    assert rates[10] == pytest.approx(0.1 + 0.9 * 10 / 20)
    assert rates[20] == pytest.approx(1.0)
    # then cosine over the remaining 80 steps, down to min_lr
    assert rates[60] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-6)
    assert rates[-1] == pytest.approx(0.01, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[20:]))


def test_onecycle_peaks_at_the_optimizer_rate_by_default():
    rates = lrs_of(["scheduler=onecycle"], steps=100, max_epochs=5, lr=0.5)
    assert max(rates) == pytest.approx(0.5, rel=1e-3)
    assert rates[0] == pytest.approx(0.5 / 25)
    assert rates.index(max(rates)) in range(28, 31)  # pct_start 0.3


def test_the_default_onecycle_peaks_at_five_times_each_group_rate():
    rates = lrs_of(["scheduler=onecycle_fast"], steps=100, max_epochs=5, lr=0.5)
    assert max(rates) == pytest.approx(2.5, rel=1e-3)
    assert rates[0] == pytest.approx(2.5 / 25)


def test_schedules_must_fit_in_the_run():
    with pytest.raises(ConfigError, match=r"scheduler\.warmup_epochs=5\.0: must be < trainer"):
        composed("scheduler=cosine", "scheduler.warmup_epochs=5", "trainer.max_epochs=5")
    with pytest.raises(ConfigError, match=r"scheduler\.milestones=\[8, 12\]: must be < trainer"):
        composed("scheduler=multistep", "trainer.max_epochs=10")
    with pytest.raises(ConfigError, match=r"scheduler\.step_size=5: must be < trainer"):
        composed("scheduler=step", "trainer.max_epochs=5")
    assert composed("scheduler=multistep", "trainer.max_epochs=13").scheduler.milestones == [8, 12]


def test_plateau_lowers_the_rate_when_val_loss_stalls(tmp_path):
    cfg = composed("optimizer=sgd", "optimizer.lr=1e-6", "scheduler=plateau",
                   "scheduler.patience=0", "scheduler.factor=0.5")  # fmt: skip
    torch.manual_seed(0)
    module = ClassificationModule(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 3)),
        nn.Identity(),
        3,
        instantiate(cfg.optimizer),
        scheduler=scheduler_factory(cfg.scheduler),
    )
    # A rate of 1e-6 leaves val/loss flat: every epoch after the first is a plateau.
    trainer = fit(module, tmp_path, max_epochs=4)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-6 * 0.5**3)

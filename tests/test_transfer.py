"""Transfer learning: sources, head replacement, channel adaptation, freeze policies, BN."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dlexp.config.model import MODEL_SCHEMAS, model_config
from dlexp.config.model_base import ModelConfig
from dlexp.config.scheduler import SCHEDULER_SCHEMAS
from dlexp.config.transfer import FinetuneConfig, FreezeStagesConfig
from dlexp.errors import ConfigError, InputError
from dlexp.models import MODELS, Classifier, build_model
from dlexp.transfer.policy import (
    LR_SCALE,
    FreezePolicy,
    GroupedOptimizer,
    apply_lr_scale,
    growth_scale,
)
from dlexp.transfer.setup import prepare_transfer
from dlexp.transfer.stages import check_freeze_until, frozen_stages_until, stage_index, stages
from dlexp.transfer.weights import adapt_channels

from conftest import QUICK, REPO, read_metrics, run_inprocess, run_python

# A small training split keeps every run short; the model is LeNet-5 with BatchNorm.
FAST = [
    *QUICK,
    "logger=none",
    "~callbacks.lr_monitor",
    "scheduler=none",  # constant rates: the tests read the param groups' learning rates
    "trainer.num_sanity_val_steps=0",
    "data.val_fraction=0.1",
    "data.test_fraction=0.7",
    "model.norm=batch",
]
LENET_BN = model_config("lenet5", norm="batch")


def train(tmp: Path, name: str, *overrides: str, capsys=None) -> Path:
    run_dir = tmp / name
    code = run_inprocess("train", *FAST, f"hydra.run.dir={run_dir}", *overrides, cwd=tmp)
    assert code == 0, capsys.readouterr().err if capsys else code
    return run_dir


def state(path: Path) -> dict[str, torch.Tensor]:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    return {
        k[len("model.") :]: v for k, v in loaded["state_dict"].items() if k.startswith("model.")
    }


def epoch_states(run_dir: Path) -> list[dict[str, torch.Tensor]]:
    """The model state after each epoch (the runs keep every epoch's checkpoint)."""
    return [state(p) for p in sorted((run_dir / "checkpoints").glob("epoch*.ckpt"))]


def param_groups(ckpt: Path) -> list[tuple[str, float, int]]:
    """Each param group's name, rate (times its ``lr_scale``: what it steps with) and size."""
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    groups = loaded["optimizer_states"][0]["param_groups"]
    return [(g.get("name"), g["lr"] * g.get(LR_SCALE, 1.0), len(g["params"])) for g in groups]


class LrTrace(pl.Callback):
    """``+callbacks.lr_trace._target_=test_transfer.LrTrace +callbacks.lr_trace.path=…``:
    writes, for every optimizer step, the epoch and the rate each param group steps with
    (read inside the step, after the ``lr_scale`` hook), as JSON at the end of fit."""

    def __init__(self, path: str) -> None:
        self.path, self.steps = Path(path), []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        lrs = {g.get("name"): g["lr"] for g in optimizer.param_groups}
        self.steps.append({"epoch": trainer.current_epoch, **lrs})

    def on_fit_end(self, trainer, pl_module) -> None:
        self.path.write_text(json.dumps(self.steps))


def lr_trace(run_dir: Path) -> list[str]:
    path = run_dir.parent / f"{run_dir.name}_lrs.json"
    return [
        "+callbacks.lr_trace._target_=test_transfer.LrTrace",
        f"+callbacks.lr_trace.path={path}",
    ]


def read_lr_trace(run_dir: Path) -> list[dict]:
    return json.loads((run_dir.parent / f"{run_dir.name}_lrs.json").read_text())


def non_bn_params(module: nn.Module) -> int:
    """The number of parameter tensors outside BatchNorm layers (what bn=freeze trains)."""
    return sum(
        len(list(m.parameters(recurse=False)))
        for m in module.modules()
        if not isinstance(m, _BatchNorm)
    )


def same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A LeNet-5 (BatchNorm) run on digits to transfer from."""
    tmp = tmp_path_factory.mktemp("source")
    return train(tmp, "source")


@pytest.fixture(scope="module")
def source_state(source: Path) -> dict[str, torch.Tensor]:
    return state(source / read_metrics(source)["best_checkpoint"])


EVERY_EPOCH = "callbacks.model_checkpoint.save_top_k=-1"


def test_linear_probe_keeps_backbone_and_batchnorm_bit_identical(tmp_path, source, source_state):
    run = train(
        tmp_path, "probe", "transfer=linear_probe", f"transfer.source={source}", EVERY_EPOCH
    )
    epochs = epoch_states(run)
    assert len(epochs) == 2
    for after in epochs:
        assert same(after, source_state, "backbone.")  # weights, BN affine, running stats, counts
        assert not same(after, source_state, "head.")
    record = read_metrics(run)["transfer"]
    assert record["policy"] == "linear_probe" and record["head"] == "loaded"
    assert record["frozen_stages"] == [
        name
        for name, _ in stages(
            build_model(LENET_BN, in_channels=1, num_classes=10, image_size=32).backbone
        )
    ]
    assert [g[0] for g in param_groups(run / "checkpoints" / "last.ckpt")] == ["head"]


def test_bn_train_lets_frozen_stages_batchnorm_learn(tmp_path, source, source_state):
    run = train(
        tmp_path,
        "probe_bn",
        "transfer=linear_probe",
        f"transfer.source={source}",
        "transfer.bn=train",
        "trainer.max_epochs=1",
    )
    (after,) = epoch_states(run)
    assert torch.equal(
        after["backbone.conv1.0.weight"], source_state["backbone.conv1.0.weight"]
    )  # conv
    assert not torch.equal(
        after["backbone.conv1.1.running_mean"], source_state["backbone.conv1.1.running_mean"]
    )
    assert not torch.equal(
        after["backbone.conv1.1.weight"], source_state["backbone.conv1.1.weight"]
    )


def test_freeze_stages_with_discriminative_learning_rate(tmp_path, source, source_state):
    run = train(
        tmp_path,
        "stages",
        "transfer=freeze_stages",
        f"transfer.source={source}",
        "transfer.freeze_until=conv1",
        "transfer.backbone_lr_factor=0.25",
        "trainer.max_epochs=1",
        "optimizer.lr=0.002",
    )
    (after,) = epoch_states(run)
    frozen = ("backbone.conv1.",)  # conv1 with its BatchNorm (stage 0)
    for key, value in source_state.items():
        if key.startswith(frozen):
            assert torch.equal(after[key], value), key
    assert not torch.equal(
        after["backbone.conv2.0.weight"], source_state["backbone.conv2.0.weight"]
    )
    assert not torch.equal(
        after["backbone.conv2.1.running_mean"], source_state["backbone.conv2.1.running_mean"]
    )
    groups = param_groups(run / "checkpoints" / "last.ckpt")
    assert [(name, lr) for name, lr, _ in groups] == [("head", 0.002), ("backbone", 0.0005)]
    assert read_metrics(run)["transfer"]["frozen_stages"] == ["conv1"]


def test_gradual_unfreezes_at_the_epoch_with_a_growing_learning_rate(
    tmp_path, source, source_state
):
    run = tmp_path / "gradual"
    train(
        tmp_path,
        "gradual",
        "transfer=gradual",
        f"transfer.source={source}",
        "transfer.unfreeze_at_epoch=1",
        "transfer.backbone_lr_factor=0.1",
        "transfer.lr_growth=2",
        "trainer.max_epochs=3",
        EVERY_EPOCH,
        *lr_trace(run),
    )
    first, second, third = epoch_states(run)
    assert same(first, source_state, "backbone.")  # frozen during epoch 1
    for weight in ("backbone.conv1.0.weight", "backbone.conv2.0.weight", "backbone.fc1.0.weight"):
        assert not torch.equal(second[weight], first[weight])  # trains from epoch 2
        assert not torch.equal(third[weight], second[weight])
    for after in (second, third):  # transfer.bn=freeze: BN stays frozen after unfreezing too
        for key in (
            "backbone.conv1.1.running_var",
            "backbone.conv1.1.weight",
            "backbone.fc2.1.bias",
        ):
            assert torch.equal(after[key], source_state[key]), key
    # The backbone's group is in the optimizer from the start (frozen: never stepped), at
    # 0.1 x the head's rate when it unfreezes, then x2 per epoch (scheduler=none: constant).
    checkpoints = sorted((run / "checkpoints").glob("epoch*.ckpt"))
    lrs = [[(name, pytest.approx(lr)) for name, lr, _ in param_groups(c)] for c in checkpoints]
    assert lrs == [
        [("head", 1e-3), ("backbone", 1e-4)],
        [("head", 1e-3), ("backbone", 1e-4)],
        [("head", 1e-3), ("backbone", 2e-4)],
    ]
    backbone = lenet().backbone  # bn=freeze: its BatchNorm parameters never join the optimizer
    assert {n for c in checkpoints for _, _, n in param_groups(c)[1:]} == {non_bn_params(backbone)}
    steps = read_lr_trace(run)  # per optimizer step, the rates the groups stepped with
    assert steps and {s["epoch"] for s in steps} == {0, 1, 2}
    for s in steps:
        expected = {0: 1e-4, 1: 1e-4, 2: 2e-4}[s["epoch"]]
        assert (s["head"], s["backbone"]) == (1e-3, pytest.approx(expected, rel=1e-12)), s


# -- gradual with the default recipe's schedule, and with every other -------------------

DEFAULT_SCHEDULE = [o for o in FAST if o != "scheduler=none"]  # the default: onecycle_fast


def onecycle_lrs(lr: float, total_steps: int, peak_factor: float = 5.0) -> list[float]:
    """The rates torch's OneCycleLR gives a group at ``lr`` (dlexp's defaults), per step."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak_factor * lr, total_steps=total_steps, pct_start=0.3
    )
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_gradual_trains_with_the_default_onecycle_schedule(tmp_path, source, source_state):
    """No scheduler=none: the default OneCycle schedule scales both param groups; AdamW's
    decoupled weight decay (0.01) leaves the frozen backbone bit-identical."""
    run = tmp_path / "gradual_onecycle"
    code = run_inprocess(
        "train",
        *DEFAULT_SCHEDULE,
        f"hydra.run.dir={run}",
        "optimizer=adamw",
        "transfer=gradual",
        f"transfer.source={source}",
        "transfer.unfreeze_at_epoch=1",
        "transfer.lr_growth=3",  # backbone_lr_factor: gradual's default, 0.1
        "trainer.max_epochs=3",
        EVERY_EPOCH,
        *lr_trace(run),
        cwd=tmp_path,
    )
    assert code == 0
    assert read_metrics(run)["status"] == "completed"
    first, second, third = epoch_states(run)
    assert same(first, source_state, "backbone.")  # frozen in epoch 1: no step, no decay
    for weight in ("backbone.conv1.0.weight", "backbone.fc2.0.weight"):
        assert not torch.equal(second[weight], first[weight])
        assert not torch.equal(third[weight], second[weight])
    for after in (second, third):  # bn=freeze
        assert torch.equal(
            after["backbone.conv2.1.running_mean"], first["backbone.conv2.1.running_mean"]
        )
        assert torch.equal(after["backbone.conv2.1.weight"], first["backbone.conv2.1.weight"])

    steps = read_lr_trace(run)
    head = onecycle_lrs(1e-3, len(steps))  # the schedule is undisturbed: torch's own numbers
    backbone = onecycle_lrs(1e-4, len(steps))
    growth = {0: 1.0, 1: 1.0, 2: 3.0}  # x lr_growth per epoch after the unfreeze epoch
    for step, head_lr, backbone_lr in zip(steps, head, backbone, strict=True):
        assert step["head"] == pytest.approx(head_lr, rel=1e-12), step
        assert step["backbone"] == pytest.approx(backbone_lr * growth[step["epoch"]], rel=1e-12)
        ratio = step["backbone"] / step["head"]  # factor x head before growth, 0.3 x after
        assert ratio == pytest.approx(0.1 * growth[step["epoch"]], rel=1e-9), step


@pytest.mark.parametrize(
    "schedule",
    [
        ("scheduler=cosine",),
        ("scheduler=step", "scheduler.step_size=1"),
        ("scheduler=multistep", "scheduler.milestones=[1]"),
        ("scheduler=plateau", "scheduler.patience=0", "scheduler.threshold=10"),
    ],
    ids=lambda s: s[0],
)
def test_gradual_trains_with_every_schedule(tmp_path, source, source_state, schedule):
    run = tmp_path / "gradual"
    code = run_inprocess(
        "train",
        *DEFAULT_SCHEDULE,
        *schedule,
        f"hydra.run.dir={run}",
        "transfer=gradual",
        f"transfer.source={source}",
        "transfer.unfreeze_at_epoch=1",
        "transfer.lr_growth=2",
        "trainer.max_epochs=3",
        EVERY_EPOCH,
        *lr_trace(run),
        cwd=tmp_path,
    )
    assert code == 0
    first, second, _ = epoch_states(run)
    assert same(first, source_state, "backbone.")
    assert not torch.equal(second["backbone.conv1.0.weight"], first["backbone.conv1.0.weight"])
    steps = read_lr_trace(run)
    growth = {0: 1.0, 1: 1.0, 2: 2.0}
    for step in steps:
        assert step["backbone"] / step["head"] == pytest.approx(0.1 * growth[step["epoch"]]), step
    # the schedule moved the head's rate (step, multistep and plateau at the epoch ends)
    assert len({step["head"] for step in steps}) > 1


# -- the learning-rate multiplier against each schedule, without Lightning ----------------

SCHEDULES = {
    "none": {},
    "onecycle": {},
    "cosine": {"warmup_epochs": 1.0},
    "step": {"step_size": 2},
    "multistep": {"milestones": [2, 4]},
    "plateau": {"patience": 0, "factor": 0.5},
}


def tiny_classifier() -> Classifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(OrderedDict(fc=nn.Linear(3, 4), bn=nn.BatchNorm1d(4)))
    return Classifier(backbone, nn.Linear(4, 2), 4)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_lr_growth_multiplies_any_schedule_without_compounding(name):
    """Between steps, every group's ``lr`` (what the schedule reads and writes) equals, bit
    for bit, that of the same schedule on an optimizer without ``lr_growth``; inside each
    step the backbone steps with that times ``lr_growth ** k`` (k epochs after the
    unfreeze), capped at the head's rate."""
    epochs, per_epoch, at, factor, growth = 7, 3, 1, 0.1, 2.0

    def setup(lr_growth: float):
        model = tiny_classifier()
        policy = FreezePolicy(
            [model.backbone],
            train_bn=False,
            unfreeze_at_epoch=at,
            lr_factor=factor,
            lr_growth=lr_growth,
        )
        policy.freeze_before_training(None)
        sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
        optimizer = GroupedOptimizer(sgd, model.backbone, factor, policy.to_unfreeze)(
            model.parameters()
        )
        config = SCHEDULER_SCHEMAS[name](**SCHEDULES[name])
        made = config.build(optimizer, total_steps=epochs * per_epoch, max_epochs=epochs)
        return model, policy, optimizer, made

    ours, plain = setup(growth), setup(1.0)
    apply_lr_scale(ours[2])
    used = []  # the rates of ours' groups inside each step (a pre-hook after apply_lr_scale's)
    ours[2].register_step_pre_hook(lambda opt, *_: used.append([g["lr"] for g in opt.param_groups]))
    expected = []
    x = torch.randn(8, 3)
    for epoch in range(epochs):
        for _, policy, optimizer, _ in (ours, plain):
            policy.finetune_function(None, epoch, optimizer)
        scale = growth_scale(epoch - at, factor, growth)
        assert ours[2].param_groups[1][LR_SCALE] == scale
        for _ in range(per_epoch):
            head, backbone = (g["lr"] for g in plain[2].param_groups)
            expected.append([head, min(backbone * scale, head)])
            for model, _, optimizer, made in (ours, plain):
                optimizer.zero_grad()
                model(x).square().mean().backward()
                optimizer.step()
                if made and made["interval"] == "step":
                    made["scheduler"].step()
            assert [g["lr"] for g in ours[2].param_groups] == [
                g["lr"] for g in plain[2].param_groups
            ]
        for *_, made in (ours, plain):
            if made and made["interval"] == "epoch":
                made["scheduler"].step(*([1.0] if name == "plateau" else []))
    assert used == expected
    head, backbone = used[per_epoch * (at + 1)]  # the first epoch of growth: x2
    assert backbone == pytest.approx(2 * factor * head)
    head, backbone = used[-1]
    assert backbone == pytest.approx(head, rel=1e-12)  # 2 ** 5 > 1 / 0.1: growth stopped
    assert not torch.equal(ours[0].backbone.fc.weight, plain[0].backbone.fc.weight)


def test_growth_scale():
    assert [growth_scale(k, 0.1, 1.5) for k in (-3, 0)] == [1.0, 1.0]
    assert growth_scale(2, 0.1, 1.5) == 1.5**2
    assert growth_scale(6, 0.1, 1.5) == 10.0  # 1.5 ** 6 = 11.4 > 1 / 0.1
    assert growth_scale(10**6, 0.1, 1.5) == 10.0  # no overflow
    assert growth_scale(3, 1.0, 1.5) == growth_scale(3, 2.0, 1.5) == 1.0  # at the head's already
    assert growth_scale(3, 0.1, 1.0) == 1.0


def test_a_checkpoint_saved_inside_a_step_keeps_the_scheduled_rate():
    """An interruption mid-step saves the group's scheduled rate, not the scaled one."""
    checkpoint = {"optimizer_states": [{"param_groups": [{"lr": 0.4, "_scheduled_lr": 0.1}]}]}
    FreezePolicy([], train_bn=False).on_save_checkpoint(None, None, checkpoint)
    assert checkpoint["optimizer_states"][0]["param_groups"] == [{"lr": 0.1}]


@pytest.mark.parametrize(
    "optimizer",
    [
        functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        functools.partial(torch.optim.Adam, lr=0.01, weight_decay=0.1),
        functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.1),
        functools.partial(torch.optim.RMSprop, lr=0.01, momentum=0.9, weight_decay=0.1),
    ],
    ids=lambda p: p.func.__name__,
)
def test_frozen_parameters_in_the_optimizer_are_not_touched(optimizer):
    """Frozen (grad None) parameters in a param group get no update, no weight decay and no
    momentum or moment state; after the unfreeze they train (BatchNorm stays frozen)."""
    model = lenet()
    policy = FreezePolicy(
        [m for _, m in stages(model.backbone)], train_bn=False, unfreeze_at_epoch=1
    )
    policy.freeze_before_training(None)
    opt = GroupedOptimizer(optimizer, model.backbone, 0.1, policy.to_unfreeze)(model.parameters())
    assert [g["name"] for g in opt.param_groups] == ["head", "backbone"]
    backbone = opt.param_groups[1]["params"]
    assert len(backbone) == non_bn_params(model.backbone)
    before = {k: v.clone() for k, v in model.backbone.named_parameters()}
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])

    def steps(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    policy.finetune_function(None, 0, opt)
    steps(3)
    assert all(torch.equal(p, before[k]) for k, p in model.backbone.named_parameters())
    assert not any(p in opt.state for p in backbone)
    policy.finetune_function(None, 1, opt)
    steps(1)
    for k, p in model.backbone.named_parameters():
        assert torch.equal(p, before[k]) == (".1." in k), k  # the BatchNorm layers (conv1.1, …)


def test_a_resumed_gradual_run_trains_the_backbone_past_the_unfreeze_epoch():
    """The unfreeze is a function of the epoch: a policy that starts at epoch 3 (a resumed
    run) unfreezes at once, with that epoch's growth."""
    model = lenet()
    policy = FreezePolicy(
        [m for _, m in stages(model.backbone)], train_bn=False, unfreeze_at_epoch=1, lr_growth=2
    )
    policy.freeze_before_training(None)
    opt = GroupedOptimizer(torch.optim.Adam, model.backbone, 0.1, policy.to_unfreeze)(
        model.parameters()
    )
    assert not model.backbone.conv1[0].weight.requires_grad
    policy.finetune_function(None, 3, opt)
    assert model.backbone.conv1[0].weight.requires_grad
    assert not model.backbone.conv1[1].weight.requires_grad  # bn=freeze
    assert opt.param_groups[1][LR_SCALE] == 4.0


# -- freeze_stages' default freeze_until, and the Lightning-free check -------------------


def meta_model(name: str, **overrides) -> Classifier:
    with torch.device("meta"):
        return build_model(
            model_config(name, **overrides), in_channels=3, num_classes=10, image_size=32
        )


def test_freeze_until_defaults_to_all_but_the_last_stage_with_parameters():
    names = lambda frozen: [n for n, _ in frozen]  # noqa: E731
    assert names(frozen_stages_until(lenet().backbone, None)) == [
        "conv1",
        "conv2",
        "flatten",
        "fc1",
    ]
    assert names(frozen_stages_until(meta_model("resnet18").backbone, None)) == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
    ]  # layer4 trains (and the parameter-free pool, flatten after it)
    assert names(frozen_stages_until(meta_model("resnet20").backbone, None)) == [
        "stem",
        "layer1",
        "layer2",
    ]
    assert names(frozen_stages_until(meta_model("vgg11").backbone, None))[-1] == "fc6"
    single = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="freezes no parameters: the backbone has 1 stage"):
        frozen_stages_until(single, None)


def test_freeze_stages_without_freeze_until_trains_the_last_backbone_stage(source, source_state):
    model = lenet()
    setup = prepare_transfer(FreezeStagesConfig(source=str(source)), model, LENET_BN)
    assert setup.record["frozen_stages"] == ["conv1", "conv2", "flatten", "fc1"]
    (policy,) = setup.callbacks
    policy.freeze_before_training(None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[1] for n in trainable if n.startswith("backbone.")} == {"fc2"}
    optimizer = setup.optimizer(torch.optim.Adam)(model.parameters())
    assert [g["name"] for g in optimizer.param_groups] == ["head", "backbone"]


def test_check_freeze_until_on_a_meta_model_raises_what_training_would():
    model = meta_model("resnet18")
    for good in (None, 0, -1, "layer3", "flatten"):
        check_freeze_until(model, good)
    named = stages(model.backbone)
    for bad in ("layer9", 7, -8):
        with pytest.raises(ConfigError) as checked:
            check_freeze_until(model, bad)
        with pytest.raises(ConfigError) as trained:
            stage_index(named, bad)
        assert str(checked.value) == str(trained.value)
        assert "0=stem, 1=layer1, 2=layer2, 3=layer3, 4=layer4, 5=pool, 6=flatten" in str(
            checked.value
        )


def test_stage_resolution_imports_no_lightning():
    code = (
        "import sys, torch; from dlexp.transfer.stages import check_freeze_until; "
        "from dlexp.models import build_model; from dlexp.config.model import model_config\n"
        "with torch.device('meta'):\n"
        "    m = build_model(model_config('lenet5'), in_channels=1, num_classes=10, "
        "image_size=32)\n"
        "check_freeze_until(m, 'conv2')\n"
    )
    done, heavy = run_python(code, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert heavy == ["torch", "torchvision"]  # not Lightning


# -- loading sources into a model (no training) ------------------------------------------


def lenet(num_classes: int = 10, in_channels: int = 1) -> Classifier:
    torch.manual_seed(0)
    return build_model(LENET_BN, in_channels=in_channels, num_classes=num_classes, image_size=32)


def test_head_is_replaced_when_the_class_count_differs(source, source_state):
    model = lenet(num_classes=5)
    fresh_head = {k: v.clone() for k, v in model.head.state_dict().items()}
    setup = prepare_transfer(FinetuneConfig(source=str(source)), model, LENET_BN)
    assert model.head[-1].out_features == 5
    assert all(torch.equal(v, fresh_head[k]) for k, v in model.head.state_dict().items())
    assert same(model.state_dict(), source_state, "backbone.")
    assert model.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 5)
    assert setup.record["head"] == "new"
    with pytest.raises(InputError, match="head does not fit"):
        prepare_transfer(FinetuneConfig(source=str(source), head="keep"), lenet(5), LENET_BN)


def test_head_new_replaces_a_head_of_the_same_shape(source, source_state):
    model = lenet(num_classes=10)
    setup = prepare_transfer(FinetuneConfig(source=str(source), head="new"), model, LENET_BN)
    assert setup.record["head"] == "new"
    assert not torch.equal(model.state_dict()["head.0.weight"], source_state["head.0.weight"])
    assert same(model.state_dict(), source_state, "backbone.")


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_one_to_three_channels_adapts_the_first_conv(source, source_state, mode):
    model = lenet(in_channels=3)
    setup = prepare_transfer(
        FinetuneConfig(source=str(source), channel_adapt=mode), model, LENET_BN
    )
    w = source_state["backbone.conv1.0.weight"]  # (6, 1, 5, 5)
    expected = w.repeat(1, 3, 1, 1) / (3 if mode == "sum" else 1)
    assert torch.equal(model.state_dict()["backbone.conv1.0.weight"], expected)
    assert setup.record["channels_adapted"] == [
        f"backbone.conv1.0.weight: 1 -> 3 channels ({mode})"
    ]
    gray = torch.rand(1, 1, 32, 32)  # "sum" keeps the response to a gray image copied 3 times
    conv3, conv1 = model.backbone.conv1[0], nn.Conv2d(1, 6, 5, bias=False)
    conv1.weight.data.copy_(w)
    ratio = 1 if mode == "sum" else 3
    torch.testing.assert_close(conv3(gray.repeat(1, 3, 1, 1)), ratio * conv1(gray))


def test_three_to_one_channels_from_a_plain_state_dict(tmp_path):
    rgb = lenet(in_channels=3)
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)
    w = rgb.state_dict()["backbone.conv1.0.weight"]
    for mode, expected in (("sum", w.sum(1, keepdim=True)), ("mean", w.mean(1, keepdim=True))):
        gray = lenet(in_channels=1)
        prepare_transfer(FinetuneConfig(source=str(path), channel_adapt=mode), gray, LENET_BN)
        torch.testing.assert_close(gray.state_dict()["backbone.conv1.0.weight"], expected)
    assert torch.equal(adapt_channels(w, 1, "sum"), w.sum(1, keepdim=True))


def test_mismatched_architecture_lists_the_keys(tmp_path, source, capsys):
    code = run_inprocess(
        "train",
        *[o for o in FAST if o != "model.norm=batch"],
        "transfer=finetune",
        f"transfer.source={source}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert "22 mismatching keys: backbone.conv1.0.bias (missing in the source)" in err[0]
    assert "(+17 more)" in err[0] and "model.norm=batch" in err[0]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_malicious_source_is_refused_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Payload()}, evil)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Payload(), protocol=2))
    for path in (evil, raw):
        code = run_inprocess(
            "train",
            *FAST,
            "transfer=finetune",
            f"transfer.source={path}",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and "refused: unpickling it would call posix.system" in err[0], err
    assert not marker.exists()


def test_freeze_until_takes_an_index_a_negative_index_or_a_name():
    named = [("stem", nn.Identity()), ("layer1", nn.Identity()), ("layer2", nn.Identity())]
    assert stage_index(named, "layer1") == 1
    assert stage_index(named, 0) == 0
    assert stage_index(named, -1) == 2
    with pytest.raises(ConfigError, match="0=stem, 1=layer1, 2=layer2"):
        stage_index(named, "layer3")
    with pytest.raises(ConfigError):
        stage_index(named, 3)


def test_freeze_options_are_checked_before_training(tmp_path, capsys):
    cases = {
        "transfer=finetune": "transfer=finetune needs a source",
        "transfer=freeze_stages transfer.source=. transfer.freeze_until=conv9": (
            "transfer.freeze_until=conv9: must name a backbone stage"
        ),
        "transfer=linear_probe transfer.source=no/such/run": "no such file or directory",
        "transfer=linear_probe transfer.source=. transfer.bn=maybe": (
            "transfer.bn=maybe: must be one of: freeze, train"
        ),
    }
    for overrides, message in cases.items():
        code = run_inprocess("train", *FAST, *overrides.split(), cwd=tmp_path)
        err = capsys.readouterr().err
        assert code == 2 and message in err, (overrides, err)
    assert not (tmp_path / "outputs").exists()


# -- torchvision weights from the torch hub cache ------------------------------------------


@dataclasses.dataclass
class TinyTVConfig(ModelConfig):
    torchvision_arch: ClassVar[str] = "shufflenet_v2_x0_5"
    name: str = "tiny_tv"


def tiny_shufflenet(
    *, in_channels, num_classes, image_size, norm_layer, act_layer, pool_layer, drop_rate
) -> Classifier:
    """torchvision's ShuffleNetV2 x0.5 split into named backbone stages and a head."""
    import torchvision

    tv = torchvision.models.shufflenet_v2_x0_5(num_classes=num_classes)
    tv.conv1[0] = nn.Conv2d(in_channels, 24, 3, 2, 1, bias=False)
    names = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
    backbone = nn.Sequential(
        OrderedDict(
            [(n, getattr(tv, n)) for n in names]
            + [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        )
    )
    return Classifier(backbone, tv.fc, 1024)


@pytest.fixture
def torchvision_model(monkeypatch, tmp_path):
    """A registered model with a torchvision counterpart and an empty torch hub cache."""
    monkeypatch.setitem(MODEL_SCHEMAS, "tiny_tv", TinyTVConfig)
    monkeypatch.setitem(MODELS, "tiny_tv", tiny_shufflenet)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return TinyTVConfig()


def test_torchvision_weights_load_from_the_hub_cache(torchvision_model, tmp_path):
    import torchvision

    weights = tmp_path / "torch" / "hub" / "checkpoints" / "shufflenetv2_x0.5-f707e7126e.pth"
    weights.parent.mkdir(parents=True)
    torch.manual_seed(1)
    reference = torchvision.models.shufflenet_v2_x0_5().state_dict()  # 1000 ImageNet classes
    torch.save(reference, weights)
    model = build_model(torchvision_model, in_channels=1, num_classes=10, image_size=32)
    cfg = FinetuneConfig(source="torchvision:IMAGENET1K_V1", download=False)
    setup = prepare_transfer(cfg, model, torchvision_model)
    ours = model.state_dict()
    assert torch.equal(ours["backbone.conv1.0.weight"], reference["conv1.0.weight"].sum(1, True))
    assert torch.equal(
        ours["backbone.stage3.2.branch2.3.weight"], reference["stage3.2.branch2.3.weight"]
    )
    assert torch.equal(ours["backbone.conv5.1.running_var"], reference["conv5.1.running_var"])
    assert model.head.out_features == 10 and setup.record["head"] == "new"
    assert str(weights) in setup.record["source"]


def test_torchvision_weights_missing_offline_say_where_to_put_them(torchvision_model, tmp_path):
    model = build_model(torchvision_model, in_channels=3, num_classes=10, image_size=32)
    cfg = FinetuneConfig(source="torchvision:IMAGENET1K_V1", download=False)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "shufflenetv2_x0.5-f707e7126e.pth"
    with pytest.raises(InputError) as info:
        prepare_transfer(cfg, model, torchvision_model)
    assert f"save it as {expected}" in str(info.value)
    assert "https://download.pytorch.org/models/shufflenetv2_x0.5-f707e7126e.pth" in str(info.value)
    cfg.source = "torchvision:IMAGENET9K"
    with pytest.raises(ConfigError, match="weights are: IMAGENET1K_V1"):
        prepare_transfer(cfg, model, torchvision_model)


def test_torchvision_weights_need_a_model_with_a_torchvision_counterpart():
    cfg = FinetuneConfig(source="torchvision:IMAGENET1K_V1", download=False)
    with pytest.raises(ConfigError, match="model lenet5 has no torchvision counterpart"):
        prepare_transfer(cfg, lenet(), LENET_BN)

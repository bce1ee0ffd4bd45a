"""Transfer learning: sources, head replacement, channel adaptation, freeze policies, BN."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import nn

from dlexp.config.model import MODEL_SCHEMAS, ModelConfig, model_config
from dlexp.config.transfer import FinetuneConfig
from dlexp.errors import ConfigError, InputError
from dlexp.models import MODELS, Classifier, build_model
from dlexp.transfer.setup import prepare_transfer
from dlexp.transfer.stages import stage_index, stages
from dlexp.transfer.weights import adapt_channels

from conftest import QUICK, read_metrics, run_inprocess

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
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    groups = loaded["optimizer_states"][0]["param_groups"]
    return [(g.get("name"), g["lr"], len(g["params"])) for g in groups]


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
    return state(Path(read_metrics(source)["best_checkpoint"]))


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
    run = train(
        tmp_path,
        "gradual",
        "transfer=gradual",
        f"transfer.source={source}",
        "transfer.unfreeze_at_epoch=1",
        "transfer.backbone_lr_factor=0.1",
        "transfer.lr_growth=2",
        "trainer.max_epochs=3",
        EVERY_EPOCH,
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
    checkpoints = sorted((run / "checkpoints").glob("epoch*.ckpt"))
    lrs = [[(name, pytest.approx(lr)) for name, lr, _ in param_groups(c)] for c in checkpoints]
    assert lrs == [
        [("head", 1e-3)],
        [("head", 1e-3), ("backbone", 1e-4)],
        [("head", 1e-3), ("backbone", 2e-4)],
    ]


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
        "transfer.bn=maybe": "must be one of: freeze, train",
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

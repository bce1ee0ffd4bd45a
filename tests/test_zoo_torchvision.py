"""The zoo's torchvision-based models are torchvision's networks: same parameters, same order.

Built on the meta device: no memory, no initialization, no forward pass.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from dlexp.config.model import MODEL_SCHEMAS, model_config
from dlexp.models import build_model

TORCHVISION_BASED = [n for n, schema in MODEL_SCHEMAS.items() if schema.torchvision_arch]


def build_pair(name: str, **overrides):
    """(dlexp model, torchvision model) for 3 channels, 1000 classes, stem=imagenet."""
    cfg = model_config(name, stem="imagenet", **overrides)
    arch = cfg.torchvision_arch_for()
    kwargs = {"aux_logits": cfg.aux_logits, "init_weights": False} if name == "googlenet" else {}
    with torch.device("meta"):
        ours = build_model(cfg, in_channels=3, num_classes=1000, image_size=224)
        theirs = torchvision.models.get_model(arch, **kwargs)
    return ours, theirs


def test_the_torchvision_based_models_are_registered_with_their_arch():
    expected = [
        "alexnet",
        "googlenet",
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
    ]
    assert sorted(TORCHVISION_BASED) == expected
    assert model_config("vgg16", norm="batch").torchvision_arch_for() == "vgg16_bn"
    assert model_config("vgg16", norm="none").torchvision_arch_for() == "vgg16"
    assert model_config("resnet18", norm="batch").torchvision_arch_for() == "resnet18"


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [  # torchvision's documented parameter counts
        ("resnet18", {}, 11_689_512),
        ("resnet50", {}, 25_557_032),
        ("vgg16", {}, 138_357_544),
        ("vgg16", {"norm": "batch"}, 138_365_992),
        ("alexnet", {}, 61_100_840),
        ("googlenet", {}, 6_624_904),
    ],
)
def test_parameter_count_equals_torchvision(name, overrides, expected):
    ours, theirs = build_pair(name, **overrides)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters()) == expected


@pytest.mark.parametrize(
    ("name", "overrides"),
    [(n, {}) for n in TORCHVISION_BASED]
    + [(f"vgg{d}", {"norm": "batch"}) for d in (11, 13, 16, 19)]
    + [("googlenet", {"aux_logits": True})],
)
def test_state_dict_has_torchvisions_entries_in_its_order(name, overrides):
    ours, theirs = build_pair(name, **overrides)
    mine = [(tuple(v.shape), v.dtype) for v in ours.state_dict().values()]
    assert mine == [(tuple(v.shape), v.dtype) for v in theirs.state_dict().values()]


def test_resnet_blocks_are_torchvisions_and_the_head_is_its_fc():
    ours, _ = build_pair("resnet18")
    assert isinstance(ours.stages()["layer1"][0], torchvision.models.resnet.BasicBlock)
    assert ours.head[-1].in_features == ours.num_features == 512

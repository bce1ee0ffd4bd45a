"""The model zoo: every model trains, splits into backbone and head, and obeys the knobs."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dlexp.config.model import MODEL_SCHEMAS, model_config
from dlexp.data.normalize import InputNormalizer
from dlexp.models import MODELS, build_model
from dlexp.models.layers import NORM_TYPES, WSConv2d
from dlexp.models.registry import UnsupportedError
from dlexp.module import ClassificationModule

ZOO = sorted(MODELS)
CONV_MODELS = [n for n in ZOO if n != "mlp"]
SHAPES = [(1, 28), (3, 32)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches run as fast on one thread, and far faster when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, channels: int = 1, size: int = 28, classes: int = 10, **overrides):
    cfg = model_config(name, **overrides)
    return build_model(cfg, in_channels=channels, num_classes=classes, image_size=size)


def build_meta(name: str, channels: int = 1, size: int = 28, **overrides):
    with torch.device("meta"):
        return build(name, channels, size, **overrides)


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten operator that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize(("channels", "size"), SHAPES)
@pytest.mark.parametrize("name", ZOO)
def test_model_outputs_logits_and_learns_a_fixed_batch(name, channels, size, norm):
    torch.manual_seed(0)
    model = build(name, channels, size, norm=norm, dropout=0.0)
    x, y = torch.randn(4, channels, size, size), torch.tensor([3, 7, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    losses = []
    for _ in range(3):
        logits = model(x)
        assert logits.shape == (4, 10)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < losses[0], (losses, final)


@pytest.mark.parametrize("name", ZOO)
def test_model_is_head_of_backbone_with_named_stages(name):
    model = build_meta(name, 3, 32).eval()
    x = torch.empty(2, 3, 32, 32, device="meta")
    features = model.backbone(x)
    assert features.shape == (2, model.num_features)
    assert model.head(features).shape == model(x).shape == (2, 10)
    final = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert len(final) == 1 and final[0].in_features == model.num_features
    assert list(model.stages())[-1] == "head"


@pytest.mark.parametrize(
    ("name", "stages"),
    [
        ("resnet18", ["stem", "layer1", "layer2", "layer3", "layer4", "pool", "flatten"]),
        ("resnet20", ["stem", "layer1", "layer2", "layer3", "pool", "flatten"]),
        ("vgg11", [*(f"block{i}" for i in range(1, 6)), "pool", "flatten", "fc6", "fc7"]),
        ("alexnet", [*(f"conv{i}" for i in range(1, 6)), "pool", "flatten", "fc6", "fc7"]),
        ("lenet5", ["conv1", "conv2", "flatten", "fc1", "fc2"]),
        ("mlp", ["flatten", "fc1", "fc2"]),
    ],
)
def test_backbone_stages_are_named(name, stages):
    assert list(build_meta(name).stages()) == [*stages, "head"]


@pytest.mark.parametrize("name", ZOO)
def test_norm_none_leaves_no_normalization_and_batch_adds_it(name):
    def norms(model):
        return [m for m in model.modules() if isinstance(m, (*NORM_TYPES, nn.LocalResponseNorm))]

    assert norms(build_meta(name, norm="none")) == []
    assert norms(build_meta(name, norm="batch"))
    assert any(isinstance(m, nn.GroupNorm) for m in build_meta(name, norm="group").modules())


@pytest.mark.parametrize("name", ZOO)
def test_activation_gelu_leaves_no_relu(name):
    model = build_meta(name, activation="gelu").eval()
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    with OpRecorder() as recorder:  # functional ReLUs count too
        model(torch.empty(2, 1, 28, 28, device="meta"))
    assert "gelu" in recorder.ops
    assert not {"relu", "relu_"} & recorder.ops


def test_default_activation_is_relu_everywhere():
    with OpRecorder() as recorder:
        build_meta("googlenet").eval()(torch.empty(2, 1, 28, 28, device="meta"))
    assert {"relu", "relu_"} & recorder.ops and "gelu" not in recorder.ops


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "lenet5", "vgg11"])
def test_pooling_avg_replaces_every_max_pool(name):
    model = build_meta(name, pooling="avg")
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert any(isinstance(m, nn.AvgPool2d) for m in model.modules())


def test_pooling_avg_replaces_the_resnet_imagenet_stem_pool():
    model = build_meta("resnet18", 3, 96, pooling="avg", stem="imagenet")
    assert isinstance(model.stages()["stem"][-1], nn.AvgPool2d)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_weight_standardization_reaches_every_conv(name):
    convs = [m for m in build_meta(name, weight_standardization=True).modules()]
    convs = [m for m in convs if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, WSConv2d) for m in convs)
    assert not any(isinstance(m, WSConv2d) for m in build_meta(name).modules())


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "lenet5", "resnet20", "vgg11"])
def test_weight_standardization_standardizes_the_effective_weights(name):
    torch.manual_seed(0)
    model = build(name, weight_standardization=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        w = conv.standardized_weight().flatten(1)
        assert torch.allclose(w.mean(1), torch.zeros(len(w)), atol=1e-5)
        assert torch.allclose(w.var(1, unbiased=False), torch.ones(len(w)), atol=1e-4)
    conv = convs[-1]  # the forward pass convolves with the standardized weights
    x = torch.randn(2, conv.in_channels, 12, 12)
    args = conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
    assert torch.allclose(conv(x), F.conv2d(x, conv.standardized_weight(), *args), atol=1e-4)
    assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, *args), atol=1e-2)


@pytest.mark.parametrize("name", ["googlenet", "lenet5", "mlp", "resnet20"])
def test_orthogonal_init_gives_orthogonal_weight_matrices(name):
    torch.manual_seed(0)
    model = build(name, init="orthogonal")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers
    for layer in layers:
        w = layer.weight.detach().flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, torch.eye(len(gram)), atol=1e-4), layer
        if layer.bias is not None:
            assert not layer.bias.any()


def test_stem_auto_is_small_up_to_64_px_and_imagenet_above():
    small = build_meta("resnet18", 3, 64).stages()["stem"]
    assert small[0].kernel_size == (3, 3) and small[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small)
    large = build_meta("resnet18", 3, 65).stages()["stem"]
    assert large[0].kernel_size == (7, 7) and large[0].stride == (2, 2)
    assert isinstance(large[-1], nn.MaxPool2d)
    forced = build_meta("resnet18", 3, 32, stem="imagenet").stages()["stem"]
    assert forced[0].kernel_size == (7, 7)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_small_stem_keeps_the_feature_map_size_of_imagenet(name):
    """At 32 px the small stem gives layer4 a 4x4 map; the imagenet stem would give 1x1."""
    model = build_meta(name, 3, 32).eval()
    x = model.stages()["stem"](torch.empty(1, 3, 32, 32, device="meta"))
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        x = model.stages()[stage](x)
    assert x.shape[-2:] == (4, 4)


# -- residual=false: the plain networks ------------------------------------------------------


def _blocks(model):
    return [m for m in model.modules() if hasattr(m, "conv2") and hasattr(m, "bn2")]


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_residual_false_removes_every_skip_connection(name):
    torch.manual_seed(0)
    residual, plain = build(name, 3, 32), build(name, 3, 32, residual=False)
    assert len(_blocks(residual)) == len(_blocks(plain)) > 0
    for model, skips in ((residual, True), (plain, False)):
        model.eval()
        for block in _blocks(model):
            last = block.conv3 if hasattr(block, "conv3") else block.conv2
            nn.init.zeros_(last.weight)  # the residual branch now outputs 0
            x = torch.rand(2, block.conv1.in_channels, 8, 8) + 0.1
            out = block(x)
            # with a skip connection the input passes; without one nothing does
            assert bool(out.abs().sum() > 0) is skips, (name, skips, block)
    assert not any("downsample" in k for k in plain.state_dict())


def test_residual_and_plain_cifar_nets_differ_only_by_the_skips():
    torch.manual_seed(0)
    residual, plain = build("resnet20", 3, 32).eval(), build("resnet20", 3, 32, residual=False)
    plain.load_state_dict(residual.state_dict())  # option-A shortcuts have no parameters
    plain.eval()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(residual(x), plain(x))
    for block in _blocks(residual) + _blocks(plain):
        block.forward = lambda t, b=block: b.relu(b.bn2(b.conv2(b.relu(b.bn1(b.conv1(t))))))
    assert torch.allclose(residual(x), plain(x))  # once the skips are cut, they are the same


@pytest.mark.parametrize(
    ("name", "millions"), [("resnet20", 0.27), ("resnet32", 0.46), ("resnet56", 0.85)]
)
def test_cifar_resnets_have_the_papers_parameter_counts(name, millions):
    params = sum(p.numel() for p in build_meta(name, 3, 32).parameters())
    assert round(params / 1e6, 2) == millions


# -- GoogLeNet's auxiliary classifiers -----------------------------------------------------


def test_googlenet_aux_heads_are_off_by_default_and_train_when_on():
    assert len(build_meta("googlenet").aux_heads) == 0
    torch.manual_seed(0)
    model = build("googlenet", aux_logits=True)
    assert list(model.aux_heads) == ["inception4a", "inception4d"]
    x = torch.randn(2, 1, 28, 28)
    logits, aux = model.train().forward_aux(x)
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    assert model(x).shape == (2, 10)  # plain forward: the logits only, as at inference

    normalizer = InputNormalizer("none", torch.zeros(1), torch.ones(1))
    module = ClassificationModule(model, normalizer, 10, lambda p: torch.optim.SGD(p, lr=0.1))
    images, targets = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8), torch.tensor([1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        torch.manual_seed(1)
        loss = module.training_step((images, targets), 0)
        torch.manual_seed(1)
        logits, aux = model.forward_aux(images.float() / 255)
        main = F.cross_entropy(logits, targets)
        expected = main + 0.3 * sum(F.cross_entropy(a, targets) for a in aux)
        assert torch.allclose(loss, expected)
        assert not torch.allclose(loss, main)
        module.eval()  # validation: no auxiliary heads
        val_loss, _ = module._step((images, targets), "val")
        assert torch.allclose(val_loss, F.cross_entropy(model(images.float() / 255), targets))


@pytest.mark.parametrize("name", ["resnet56", "resnet50"])
def test_residual_nets_without_norm_start_as_identity_blocks(name):
    """Without normalization each residual branch starts at zero, so depth cannot blow up."""
    torch.manual_seed(0)
    model = build(name, 3, 32, norm="none").eval()
    blocks = [b for b in _blocks(model) if b.downsample is None]
    assert blocks
    for block in blocks:
        x = torch.randn(2, block.conv1.in_channels, 8, 8)
        assert torch.equal(block(x), torch.relu(x))
    assert F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)) < 5


MIN_SIZES = [
    (name, stem)
    for name, schema in sorted(MODEL_SCHEMAS.items())
    for stem in (("imagenet", "small") if hasattr(schema, "stem") else (None,))
    if schema(name=name).min_size(stem) > 1
]


@pytest.mark.parametrize(("name", "stem"), MIN_SIZES)
def test_min_image_size_is_the_smallest_input_the_network_takes(name, stem):
    need = model_config(name).min_size(stem)
    extra = {"stem": stem} if stem else {}
    model = build_meta(name, 1, need, **extra).eval()
    model(torch.empty(1, 1, need, need, device="meta"))
    with pytest.raises(RuntimeError):
        model(torch.empty(1, 1, need - 1, need - 1, device="meta"))
    with pytest.raises(UnsupportedError, match=f"at least {need} px"):
        build_meta(name, 1, need - 1, **extra)

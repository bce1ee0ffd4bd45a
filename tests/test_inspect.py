"""``dlexp inspect`` and the pictures of every run: first-layer filters, feature maps,
activation curves and the gradient flow of the ``activations`` experiment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlexp.inspect.activations import activation_curves
from dlexp.inspect.layers import MIN_TILE, PAD, layer_pictures
from dlexp.models import build_model

from conftest import QUICK, compose_config, read_metrics, run_inprocess, run_python

TINY = [*QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=4"]


def model_of(*overrides: str, image_size: int = 32):
    cfg = compose_config(*overrides)
    torch.manual_seed(0)
    return build_model(cfg.model, in_channels=1, num_classes=10, image_size=image_size)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [0, 1] (the input transform of the unit tests)."""
    return images.float() / 255


def tiles_of(grid: torch.Tensor, count: int, side: int, nrow: int) -> list[torch.Tensor]:
    """The first ``count`` tiles (channel 0) of a make_grid grid of ``side``-px tiles."""
    step = side + PAD
    return [
        grid[0, PAD + (i // nrow) * step :, PAD + (i % nrow) * step :][:side, :side]
        for i in range(count)
    ]


def scaled(values: torch.Tensor) -> torch.Tensor:
    """``values`` min-max scaled to [0, 1], as the grids scale every tile (make_grid's
    ``scale_each``: a constant tile is 0)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / max(high - low, 1e-5)


def test_filter_grid_pixels_are_the_first_layers_filters():
    model = model_of("model=lenet5")  # conv1: 6 filters of 1x5x5
    weight = model.backbone.conv1[0].weight.detach()
    pictures = layer_pictures(model, to_unit, torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    factor = math.ceil(MIN_TILE / 5)  # 7: each weight a 7x7 block
    side = 5 * factor
    assert pictures.filters_of == "backbone.conv1.0"
    assert pictures.filters.shape == (3, side + 2 * PAD, 6 * (side + PAD) + PAD)
    for tile, w in zip(tiles_of(pictures.filters, 6, side, nrow=6), weight[:, 0], strict=True):
        expected = scaled(w).repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        torch.testing.assert_close(tile, expected, atol=1e-6, rtol=0)


def test_an_mlps_first_layer_units_are_drawn_as_images_of_the_input():
    model = model_of("model=mlp", "model.hidden_sizes=[100]", image_size=16)  # 100 units
    weight = model.backbone.fc1[0].weight.detach()  # of 16x16 = 256 pixels
    images = torch.zeros(3, 1, 16, 16, dtype=torch.uint8)
    pictures = layer_pictures(model, to_unit, images)
    side = 16 * 2  # 16 px, each pixel a 2x2 block
    assert pictures.filters.shape == (3, 8 * (side + PAD) + PAD, 8 * (side + PAD) + PAD)  # 64 units
    assert pictures.feature_maps == {}  # no stage outputs maps
    for unit, tile in enumerate(tiles_of(pictures.filters, 64, side, nrow=8)):
        expected = scaled(weight[unit].reshape(16, 16)).repeat_interleave(2, 0)
        expected = expected.repeat_interleave(2, 1)
        torch.testing.assert_close(tile, expected, atol=1e-6, rtol=0)


def test_feature_maps_show_each_stage_per_image():
    model = model_of("model=resnet20", image_size=32)
    images = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    pictures = layer_pictures(model, to_unit, images)
    assert model.training  # put back in its mode
    with torch.no_grad():
        stem = model.eval().backbone[0](to_unit(images))  # (its batch norm in eval mode)
    first = next(iter(pictures.feature_maps))
    names = [name.split("_", 1)[1] for name in pictures.feature_maps]
    assert names == ["stem", "layer1", "layer2", "layer3"]
    grid = pictures.feature_maps[first]  # 16 channels of 32x32: tiles of 32 px, one row an image
    assert grid.shape == (3, 3 * 33 + 1, 16 * 33 + 1)
    for i, tile in enumerate(tiles_of(grid, 16 * 3, 32, nrow=16)):
        torch.testing.assert_close(tile, scaled(stem[i // 16, i % 16]), atol=1e-5, rtol=0)


# -- the pictures of a training run, and `dlexp inspect` drawing them again ---------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """LeNet-5 on digits (32 px), one short epoch, TensorBoard on."""
    tmp = tmp_path_factory.mktemp("inspect")
    run_dir = tmp / "run"
    assert run_inprocess("train", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp) == 0
    return run_dir


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): pixels(p) for p in sorted(folder.rglob("*.png"))}


def test_a_run_writes_its_layer_pictures_and_logs_them_to_tensorboard(run):
    written = pngs(run / "layers")
    # LeNet-5 on 32 px digits: conv1 (6 maps of 14x14 after pooling) and conv2 (16 of 5x5)
    # are its stages with maps; 4 test images, one of each of the classes 0-3
    assert set(written) == {
        "filters.png",
        "inputs.png",
        "feature_maps/0_conv1.png",
        "feature_maps/1_conv2.png",
    }
    assert written["filters.png"].shape == (35 + 2, 6 * 36 + 1, 3)  # 6 tiles of 5x5, x7
    assert written["inputs.png"].shape == (32 + 2, 4 * 33 + 1, 3)  # 4 images of 32 px
    assert written["feature_maps/0_conv1.png"].shape == (4 * 43 + 1, 6 * 43 + 1, 3)  # 14 px x3
    assert written["feature_maps/1_conv2.png"].shape == (4 * 36 + 1, 16 * 36 + 1, 3)  # 5 px x7
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {f"layers/{name.removesuffix('.png')}" for name in written} <= tags


def test_the_png_is_the_grid_of_the_tested_checkpoint(run):
    from dlexp.checkpoints import lightning_state_dict, safe_load

    ckpt = run / read_metrics(run)["best_checkpoint"]
    state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
    weight = state["model.backbone.conv1.0.weight"][:, 0]
    image = pixels(run / "layers" / "filters.png")[..., 0].astype(float) / 255
    for i, w in enumerate(weight):
        tile = image[PAD : PAD + 35, PAD + i * 36 :][:, :35]
        expected = scaled(w).repeat_interleave(7, 0).repeat_interleave(7, 1).numpy()
        assert np.abs(tile - expected).max() <= 0.5 / 255 + 1e-6, i  # 8-bit rounding


def test_inspect_draws_the_same_pictures_again_from_the_run_or_its_checkpoint(
    run, tmp_path, capsys
):
    ckpt = run / read_metrics(run)["best_checkpoint"]
    for name, source in (("from_run", run), ("from_ckpt", ckpt)):
        assert run_inprocess("inspect", str(source), f"out={tmp_path / name}", cwd=tmp_path) == 0
        again = pngs(tmp_path / name)
        original = pngs(run / "layers")
        assert set(again) == set(original)
        for key, image in original.items():
            np.testing.assert_array_equal(again[key], image, err_msg=key)
    assert f"wrote {tmp_path / 'from_ckpt' / 'filters.png'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{tmp}/nope"], "dlexp inspect: {tmp}/nope: no such run directory or checkpoint"),
        (["{tmp}"], "dlexp inspect: {tmp}: not a dlexp run directory (no config.yaml in it)"),
        (["{run}", "layer=conv1"], "layer=conv1: unknown key; dlexp inspect takes out"),
        (["{run}", "conv1"], "conv1: expected key=value"),
        (["activations", "out={tmp}"], "out={tmp}: a directory; give the path of the PNG"),
    ],
)
def test_inspect_bad_input_is_one_line_exit_2_without_torch(run, tmp_path, args, expected):
    args = ["inspect", *(a.format(tmp=tmp_path, run=run) for a in args)]
    done, heavy = run_python(f"from dlexp.cli import main\nprint('exit', main({args!r}))", tmp_path)
    assert done.stdout.split()[-1] == "2"
    lines = done.stderr.strip().splitlines()[:-1]  # (the last: the probe's module list)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected.format(tmp=tmp_path) in lines[0]
    assert heavy == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- activations -------------------------------------------------------------------------------


def test_activation_curves_have_the_known_derivatives():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    curves = activation_curves(x)
    assert list(curves) == ["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]
    s = torch.sigmoid(x)
    phi = torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    derivatives = {
        "relu": (x > 0).double(),
        "leaky_relu": torch.where(x > 0, 1.0, 0.01).double(),
        "elu": torch.where(x > 0, 1.0, torch.exp(x)),
        "gelu": Phi + x * phi,
        "silu": s * (1 + x * (1 - s)),
        "tanh": 1 - torch.tanh(x) ** 2,
        "sigmoid": s * (1 - s),
    }
    values = {"relu": x.clamp_min(0), "tanh": torch.tanh(x), "sigmoid": s, "gelu": x * Phi}
    for name, (y, slope) in curves.items():
        torch.testing.assert_close(slope, derivatives[name], atol=1e-9, rtol=0, msg=name)
        if name in values:
            torch.testing.assert_close(y, values[name], atol=1e-9, rtol=0, msg=name)
    assert curves["sigmoid"][1].max() == pytest.approx(0.25, abs=1e-6)  # at x = 0


def test_inspect_activations_writes_one_figure_and_prints_its_path(tmp_path, capsys):
    assert run_inprocess("inspect", "activations", cwd=tmp_path) == 0
    path = tmp_path / "outputs" / "activations.png"
    assert capsys.readouterr().out.strip() == f"wrote {Path('outputs') / 'activations.png'}"
    assert pixels(path).shape == (360, 880, 3)  # 11 x 4.5 in at 80 dpi


# -- gradient flow (callbacks=gradient_flow, the activations experiment) ------------------------

LENET_LAYERS = [
    "backbone.conv1.0",
    "backbone.conv2.0",
    "backbone.fc1.0",
    "backbone.fc2.0",
    "head.0",
]


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> Path:
    """Two runs of the activations experiment's setup, relu and sigmoid, a few steps each."""
    sweep = tmp_path_factory.mktemp("flow") / "sweep"
    args = [*TINY, "trainer.max_epochs=2", "logger=none", "~callbacks.lr_monitor"]
    assert (
        run_inprocess(
            "train",
            "-m",
            "+experiment=activations",
            *args,
            "model.activation=relu,sigmoid",
            f"hydra.sweep.dir={sweep}",
            cwd=sweep.parent,
        )
        == 0
    )
    return sweep


def test_gradient_flow_records_every_layer_over_the_first_epoch(flows):
    for job in ("0", "1"):
        record = json.loads((flows / job / "gradient_flow.json").read_text())
        assert record["epochs"] == 1
        assert record["steps"] == 4  # limit_train_batches: the first epoch's optimizer steps
        assert [layer["name"] for layer in record["layers"]] == LENET_LAYERS
        for layer in record["layers"]:
            assert math.isfinite(layer["mean_abs_grad"]) and layer["mean_abs_grad"] > 0


def flow_of(job: Path) -> dict[str, float]:
    layers = json.loads((job / "gradient_flow.json").read_text())["layers"]
    return {layer["name"]: layer["mean_abs_grad"] for layer in layers}


def test_sigmoid_gradients_shrink_towards_the_input_and_relus_do_not(flows):
    """Sigmoid's derivative is at most 1/4: at the first layer its gradient is ~100x smaller
    than relu's (measured: 2.6e-5 against 2.7e-3), and it shrinks at every layer back."""
    assert "model.activation=sigmoid" in read_metrics(flows / "1")["overrides"]
    relu, sigmoid = flow_of(flows / "0"), flow_of(flows / "1")
    assert sigmoid["backbone.conv1.0"] < relu["backbone.conv1.0"] / 10
    assert sigmoid["backbone.conv2.0"] < relu["backbone.conv2.0"] / 10
    values = list(sigmoid.values())
    assert values == sorted(values)  # from the input: every layer larger than the one before
    assert relu["backbone.conv1.0"] > relu["backbone.fc1.0"]  # not so with relu


def test_report_plots_the_gradient_flow_of_runs_that_have_it(flows, tmp_path, capsys):
    assert run_inprocess("report", str(flows), cwd=tmp_path) == 0
    assert pixels(flows / "gradient_flow.png").shape[2] == 3
    assert "![gradient_flow](gradient_flow.png)" in (flows / "report.md").read_text()


def test_gradient_flow_epochs_out_of_range_is_bad_input(tmp_path, capsys):
    args = ["callbacks=gradient_flow", "callbacks.gradient_flow.epochs=0"]
    assert run_inprocess("train", *QUICK, *args, cwd=tmp_path) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: dlexp train: callbacks.gradient_flow.epochs=0: must be >= 1"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "first"),
    [
        ("alexnet", "backbone.conv1.0"),
        ("vgg11", "backbone.block1.0"),
        ("googlenet", "backbone.stem.0.conv"),
        ("resnet18", "backbone.stem.0"),
        ("speednet", "backbone.whiten.0"),  # its patch-whitening filters (buffers)
    ],
)
def test_every_zoo_family_gets_its_filters_and_maps(model, first):
    net = model_of(f"model={model}")
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    pictures = layer_pictures(net, to_unit, images)
    assert pictures.filters_of == first
    assert pictures.feature_maps  # every family has stages of maps
    for name, grid in pictures.feature_maps.items():  # square tiles: 4 rows (an image each)
        height, width = grid.shape[1] - PAD, grid.shape[2] - PAD  # of 1 to 16 channels
        assert height % 4 == 0 and width % (height // 4) == 0, name
        assert 1 <= width // (height // 4) <= 16, name


def test_a_model_without_pictures_leaves_a_warning_not_a_failed_run(tmp_path, caplog):
    from types import SimpleNamespace

    from dlexp.inspect.callbacks import LayerPictures

    callback = LayerPictures(tmp_path, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    trainer = SimpleNamespace(is_global_zero=True, loggers=[], global_step=0)
    module = SimpleNamespace(model=torch.nn.Identity(), input_transform=to_unit)
    callback.on_test_end(trainer, module)
    assert "no layer pictures for this model: ValueError" in caplog.text
    assert list(tmp_path.iterdir()) == []

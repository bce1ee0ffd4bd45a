"""Choosing zoo models from the command line: defaults, up-front errors, ``dlexp models``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlexp.config import CONF_DIR, register_configs
from dlexp.config.model import model_config
from dlexp.errors import ConfigError
from dlexp.models import MODELS
from dlexp.models.table import count
from dlexp.preflight import check_command_line

from conftest import run_inprocess


@pytest.fixture(scope="module", autouse=True)
def _configs():
    register_configs()


def compose(*overrides: str, multirun: bool = False):
    return check_command_line(list(overrides), multirun=multirun).configs


def test_every_model_has_a_config_file_matching_its_schema_defaults():
    files = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
    assert files == sorted(MODELS)
    for name in ("alexnet", "googlenet", "resnet18", "resnet56", "vgg16"):
        cfg = compose(f"model={name}")[0]
        assert cfg.model == model_config(name)


def test_data_shape_is_known_without_loading():
    digits = compose()[0].data.shape()
    assert (digits.in_channels, digits.image_size, digits.num_classes) == (1, 32, 10)
    mnist = compose("data=fashion_mnist")[0].data.shape()
    assert (mnist.in_channels, mnist.image_size, mnist.num_classes) == (1, 28, 10)
    assert compose("data=mnist", "data.image_size=64")[0].data.shape().image_size == 64


def test_alexnet_imagenet_stem_on_28px_fails_at_compose_time_with_the_minimum_size():
    with pytest.raises(ConfigError) as info:
        compose("model=alexnet", "model.stem=imagenet", "data=mnist")
    assert info.value.key == "data.image_size" and "63 px" in str(info.value)
    assert "data.image_size=63" in str(info.value)
    compose("model=alexnet", "model.stem=imagenet", "data=mnist", "data.image_size=64")
    compose("model=alexnet", "data=mnist")  # stem auto: small at 28 px


def test_alexnet_size_error_exits_2_before_any_run_directory(tmp_path, capsys):
    code = run_inprocess(
        "train", "model=alexnet", "model.stem=imagenet", "data=mnist", cwd=tmp_path
    )
    assert code == 2
    assert "at least 63 px" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=resnet20", "model.pooling=avg"),  # strided convolutions only
        ("model=resnet18", "model.pooling=avg"),  # 32 px digits: small stem, no max-pool
        ("model=mlp", "model.pooling=avg"),
        ("model=mlp", "model.weight_standardization=true"),
    ],
)
def test_knobs_a_model_has_no_use_for_are_config_errors(overrides):
    with pytest.raises(ConfigError) as info:
        compose(*overrides)
    assert info.value.key == overrides[1].split("=")[0]


def test_pooling_applies_where_the_model_has_a_max_pool():
    compose("model=resnet18", "model.pooling=avg", "data.image_size=96")  # imagenet stem
    compose("model=vgg11", "model.pooling=avg")


def test_model_specific_keys_belong_to_their_models():
    with pytest.raises(Exception, match="residual"):
        compose("model=vgg11", "model.residual=false")
    cfg = compose("model=googlenet", "model.aux_logits=true")[0]
    assert cfg.model.aux_logits is True


def test_the_ablation_grid_of_the_issue_composes():
    configs = compose("model=lenet5,vgg11,resnet18", "model.norm=none,batch", multirun=True)
    assert sorted((c.model.name, c.model.norm) for c in configs) == sorted(
        (m, n) for m in ("lenet5", "vgg11", "resnet18") for n in ("none", "batch")
    )


def test_count_gives_lenet5_multiply_accumulates_by_hand():
    cfg = compose("model=lenet5")[0]
    params, macs = count(cfg.model, cfg.data.shape())
    by_hand = 6 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 10
    assert macs == by_hand
    assert params == 61_706


def test_models_command_lists_every_model(tmp_path, capsys):
    assert run_inprocess("models", cwd=tmp_path) == 0
    out = capsys.readouterr().out
    assert "data=digits: 1x32x32" in out
    for name in MODELS:
        assert name in out
    assert "269,434" in out  # resnet20: the paper's 0.27M
    assert "416.5 k" in out  # lenet5's MACs
    assert "no:" not in out


def test_models_command_marks_sizes_a_model_cannot_take(tmp_path, capsys):
    code = run_inprocess("models", "data=mnist", "model.stem=imagenet", cwd=tmp_path)
    assert code == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "│" in line}
    assert "needs >= 63 px" in rows["alexnet"]
    assert "yes" in rows["resnet18"] and "imagenet" in rows["resnet18"]


def test_models_command_rejects_a_key_no_model_has(tmp_path, capsys):
    assert run_inprocess("models", "model.colour=red", cwd=tmp_path) == 2
    assert "model.colour" in capsys.readouterr().err

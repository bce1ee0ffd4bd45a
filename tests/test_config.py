"""The config path: one typed Config, defaults stated once, complete and fast up-front checks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from dlexp.config import CONF_DIR, Config, to_config, to_yaml
from dlexp.config.model import MODEL_SCHEMAS, model_config
from dlexp.config.root import GROUP_SCHEMAS
from dlexp.config.trainer import TrainerConfig
from dlexp.config.transfer import GradualConfig, LinearProbeConfig
from dlexp.errors import ConfigError

from conftest import QUICK, REPO, compose_config, read_metrics, run_inprocess, run_python

SCHEMA_GROUPS = ("data", "model", "optimizer", "scheduler", "augment", "transfer", "trainer")


def _defaults(schema: type) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _option_files():
    for group in SCHEMA_GROUPS:
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            yield group, path


@pytest.mark.parametrize(("group", "path"), list(_option_files()), ids=lambda v: str(v))
def test_option_files_state_no_default_of_their_schema(group, path):
    """A YAML option carries selections and the values that differ from what it builds on
    (its schema, or the option it extends): a restated default is a second home for it."""
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = raw.pop("defaults", [])
    schema_name = next(
        (v for d in defaults if isinstance(d, dict) for k, v in d.items() if "/schema/" in k),
        None,
    )
    if group == "trainer":
        base = _defaults(TrainerConfig)
    elif schema_name is not None:
        base = {**_defaults(GROUP_SCHEMAS[group][schema_name]), "name": schema_name}
        assert schema_name == path.stem, f"{path} takes the schema of another option"
    else:  # extends another option of its group
        parent = next(d for d in defaults if isinstance(d, str) and d != "_self_")
        base = compose_config(f"{group}={parent}")
        base = dataclasses.asdict(getattr(base, group))
    for key, value in raw.items():
        assert key in base, f"{path}: {key} is not a key of the schema"
        assert base[key] != value, f"{path}: {key}: {value!r} restates the default"


def test_the_root_config_only_selects():
    raw = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    assert set(raw) == {"defaults", "hydra"}


def test_composed_and_saved_configs_type_the_same():
    """What a run saves as config.yaml types back to the very Config it trained with (the
    path of eval, predict, resume and the DDP workers)."""
    for overrides in (
        [],
        ["model=vgg11", "model.norm=batch", "data=cifar10", "optimizer=sgd"],
        ["model=mlp", "model.hidden_sizes=[32]", "scheduler=cosine", "augment=strong"],
        ["transfer=gradual", f"transfer.source={REPO}", "callbacks=early_stopping"],
        ["data=imagefolder", f"data.root={REPO}", "trainer=ddp", "optimizer=adamw"],
        ["logger=[tensorboard,csv,mlflow,wandb]", "+logger.mlflow.tags.team=vision"],
    ):
        config = compose_config(*overrides)
        assert isinstance(config, Config)
        again = to_config(OmegaConf.create(to_yaml(config)))
        assert again == config, overrides
        assert type(again.model) is type(config.model) and type(again.data) is type(config.data)
        assert [type(v) for v in again.logger.values()] == [type(v) for v in config.logger.values()]


def test_every_group_node_is_its_options_schema():
    config = compose_config("model=resnet20", "transfer=linear_probe", f"transfer.source={REPO}")
    assert type(config.model).__name__ == "ResNet20Config"
    assert isinstance(config.transfer, LinearProbeConfig)
    assert config.loss.label_smoothing == 0.1 and config.seed == 42  # the defaults, stated once
    gradual = compose_config("transfer=gradual", f"transfer.source={REPO}").transfer
    assert isinstance(gradual, GradualConfig) and gradual.backbone_lr_factor == 0.1


def test_a_key_of_another_transfer_policy_is_refused():
    with pytest.raises(Exception, match=r"unknown key 'transfer\.freeze_until'"):
        compose_config(
            "transfer=linear_probe", f"transfer.source={REPO}", "transfer.freeze_until=2"
        )
    with pytest.raises(Exception, match=r"unknown key 'transfer\.unfreeze_at_epoch'"):
        compose_config("transfer.unfreeze_at_epoch=2")


def test_registries_bind_each_schema_to_one_builder_and_refuse_duplicates():
    from dlexp.data import DATASETS
    from dlexp.data.registry import register_data
    from dlexp.models import MODELS, register_model

    assert set(MODELS) == set(MODEL_SCHEMAS)
    assert set(DATASETS) == set(GROUP_SCHEMAS["data"])
    with pytest.raises(ValueError, match="registered already"):
        register_model("lenet5")(lambda **kw: None)
    with pytest.raises(ValueError, match="no schema"):
        register_model("lenet6")(lambda **kw: None)
    with pytest.raises(ValueError, match="registered already"):
        register_data("digits")(type("Again", (), {}))


def test_vgg_takes_dropout_true_like_every_model():
    from torch import nn

    from dlexp.models import build_model

    for name in ("vgg11", "lenet5", "alexnet"):
        config = compose_config(f"model={name}", "model.dropout=true")
        model = build_model(config.model, in_channels=1, num_classes=10, image_size=32)
        rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
        assert rates == {0.2}, name


def test_vgg_with_batchnorm_takes_the_bn_weights_variant():
    from dlexp.buildcheck import check_buildable
    from dlexp.transfer.sources import torchvision_arch

    assert torchvision_arch("torchvision:X", model_config("vgg11", norm="batch")) == "vgg11_bn"
    assert torchvision_arch("torchvision:X", model_config("vgg11")) == "vgg11"
    config = compose_config(
        "model=vgg11",
        "model.norm=batch",
        "transfer=finetune",
        "transfer.source=torchvision:IMAGENET9K",
    )
    with pytest.raises(ConfigError, match="torchvision vgg11_bn weights are: IMAGENET1K_V1"):
        check_buildable([config])
    check_buildable([dataclasses.replace(config, transfer=dataclasses.replace(
        config.transfer, source="torchvision:IMAGENET1K_V1"))])  # fmt: skip


def test_trainer_limits_follow_lightning_an_int_is_a_batch_count(tmp_path):
    assert compose_config("trainer.limit_train_batches=1").trainer.limit_train_batches == 1
    limit = compose_config("trainer.limit_train_batches=1").trainer.limit_train_batches
    assert isinstance(limit, int)
    assert compose_config("trainer.limit_train_batches=0.5").trainer.limit_train_batches == 0.5
    for bad in ("trainer.limit_train_batches=0", "trainer.limit_train_batches=1.5"):
        with pytest.raises(ConfigError, match="a number of batches"):
            compose_config(bad)
    run = tmp_path / "run"
    code = run_inprocess(
        "train", *QUICK, "trainer.limit_train_batches=1", "logger=none", f"hydra.run.dir={run}",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # one batch in each of the two epochs
    assert read_metrics(run)["status"] == "completed"


# -- the front door: fast, and no torch or Lightning for what needs neither --------------------


def probe(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    """``dlexp ARGS`` in a fresh interpreter: exit code, heavy modules imported, stderr."""
    code = f"from dlexp.cli import main\nprint('exit', main({list(args)!r}))"
    done, heavy = run_python(code, cwd=tmp_path, HOME=str(tmp_path))
    return int(done.stdout.split()[-1]), heavy, done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--help"], 0, ""),
        (["train", "--help"], 0, ""),
        (["train", "--cfg", "job"], 0, ""),
        (["train", "model=resnet999"], 2, "model=resnet999: no such option in group 'model'"),
        (["train", "model.dropout=2"], 2, "model.dropout=2: must be a rate in [0, 1)"),
        (["train", "optimizer.lr=abc"], 2, "optimizer.lr=abc: optimizer.lr must be a number"),
        (["train", "seed=-1"], 2, "seed=-1: must be a number in [0, 4294967296)"),
        (["train", "scheduler=multistep", "trainer.max_epochs=5"], 2, "scheduler.milestones="),
        (["train", "data=mnist", "data.root={tmp}/none", "data.download=false"], 2,
         "data.root={tmp}/none: MNIST not found in {tmp}/none/MNIST/raw"),
        (["train", "-m", "+experiment=batchnorm", "data=cifar10", "data.root={tmp}/none",
          "data.download=false"], 2, "CIFAR10 not found in {tmp}/none/cifar-10-batches-py"),
        (["eval", "ckpt={tmp}/none"], 2, "ckpt={tmp}/none: no such file or directory"),
        (["train", "-m", "data.folds=3", "data.fold=all", "model.dropout=2"], 2,
         "model.dropout=2: must be a rate in [0, 1)"),
        (["train", "-m", "data.folds=3", "data.fold=all", "data.folds=1"], 2,
         "data.folds=1: must be >= 2"),
    ],
)  # fmt: skip
def test_help_print_and_config_errors_import_neither_torch_nor_lightning(
    tmp_path, args, code, message
):
    args = [a.format(tmp=tmp_path) for a in args]
    got, heavy, err = probe(tmp_path, *args)
    assert (got, heavy) == (code, []), err
    assert message.format(tmp=tmp_path) in err
    if code:
        assert "Traceback" not in err and err.count("error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


def test_train_help_lists_the_user_groups_not_the_schemas(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "dlexp", "train", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert "model: alexnet, googlenet" in done.stdout and "onecycle_fast" in done.stdout
    assert "schema" not in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trainer.precision=16-mixed"], "trainer.accelerator=auto found no GPU"),
        (["trainer.accelerator=gpu"], "trainer.accelerator=gpu: no CUDA GPU is visible"),
        (["transfer=freeze_stages", "transfer.source={repo}", "transfer.freeze_until=conv9"],
         "transfer.freeze_until=conv9: must name a backbone stage"),
        (["-m", "transfer=freeze_stages", "transfer.source={repo}",
          "transfer.freeze_until=conv1,conv9"], "transfer.freeze_until=conv9"),
    ],
)  # fmt: skip
def test_what_needs_the_model_or_the_device_is_checked_before_any_directory(
    tmp_path, capsys, monkeypatch, args, message
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine
    args = [a.format(repo=REPO) for a in args]
    assert run_inprocess("train", *args, cwd=tmp_path) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_tab_completion_completes_commands_groups_and_options(tmp_path):
    """``eval "$(dlexp train -sc install=bash)"`` in bash, then the completion function."""
    script = (
        'eval "$(dlexp train -sc install=bash)"\n'
        "complete_line() {\n"
        '  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$1"\n'
        "  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); hydra_bash_completion\n"
        '  echo "${COMPREPLY[*]}"\n'
        "}\n"
        'complete_line "dlexp tr"\n'
        'complete_line "dlexp train model=vg"\n'
        'complete_line "dlexp train model.dro"\n'
    )
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    if not (bin_dir / "dlexp").exists():  # the console script of an install
        (tmp_path / "bin").mkdir()
        wrapper = tmp_path / "bin" / "dlexp"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m dlexp "$@"\n')
        wrapper.chmod(0o755)
        env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "train",
        "model=vgg11 model=vgg13 model=vgg16 model=vgg19",
        "model.dropout=",
    ], done.stderr


def test_errors_that_need_the_model_built_import_torch_but_not_lightning(tmp_path):
    args = ["train", "transfer=freeze_stages", f"transfer.source={REPO}", "transfer.freeze_until=x"]
    code, heavy, err = probe(tmp_path, *args)
    assert code == 2 and "transfer.freeze_until=x: must name a backbone stage" in err, err
    assert "pytorch_lightning" not in heavy and "lightning" not in heavy and "torch" in heavy
    assert sorted(p.name for p in tmp_path.iterdir()) == []

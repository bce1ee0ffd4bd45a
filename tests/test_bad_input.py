"""Bad command lines: exit 2, one readable line naming key, value and what is allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import QUICK, run_cli, run_inprocess, write_png

# (command line, text the error line must contain); {tmp} is the test's own temp dir (a path
# below it that does not exist stands for a missing file or folder).
BAD_TRAIN_LINES = [
    (["model=resnet999"], "model=resnet999: no such option in group 'model'; available:"),
    (["model.foo=1"], "model.foo=1: unknown key 'model.foo'"),
    (["model.dropout=1.5"], "model.dropout=1.5: must be a rate in [0, 1), or true for 0.2"),
    (["--cfg", "job", "-m", "seed=0,1"], "-m/--multirun and --cfg: give one of them"),
    (["--cfg", "bogus"], "argument --cfg/-c: invalid choice: 'bogus'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["+foo=1"], "foo=1: unknown key; keys there: augment, callbacks"),
    (["+model.foo=1"], "model.foo=1: unknown key; keys there: activation"),
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs=abc: trainer.max_epochs must be an integer"),
    (["optimizer.lr=-1"], "optimizer.lr=-1.0: must be > 0"),
    (
        ["data.val_fraction=0.5", "data.test_fraction=0.45"],
        "data.val_fraction+data.test_fraction=0.95: must be < 0.9",
    ),
    (
        ["data=mnist", "data.root={tmp}/missing", "data.download=false"],
        "data.root={tmp}/missing: MNIST not found in {tmp}/missing/MNIST/raw (expected "
        "train-images-idx3-ubyte.gz",
    ),
    (["model=mlp", "model.hidden_sizes=[64,a]"], "model.hidden_sizes=[64,a]: model.hidden_sizes"),
    (["seed=-1"], "seed=-1: must be a number in [0, 4294967296)"),
    (["model.activation=swish"], "model.activation=swish: must be one of: relu, leaky_relu"),
    (["data.normalize=zscore"], "data.normalize=zscore: must be one of: standardize, minmax"),
    (["optimizer=adagrad"], "optimizer=adagrad: no such option in group 'optimizer'"),
    (["seed=[1"], "seed=[1: cannot parse this override"),
    (["model.dropout=0,0.5"], "a list of values is a sweep; add -m/--multirun"),
    # k-fold cross-validation
    (["data.fold=1"], "data.fold=1: needs data.folds=<k>, the number of folds"),
    (["data.folds=1", "data.fold=0"], "data.folds=1: must be >= 2"),
    (["data.folds=5"], "data.folds=5: needs data.fold=<0..4>, the fold to validate on"),
    (["data.folds=5", "data.fold=5"], "data.fold=5: must be < data.folds=5: 0 to 4"),
    (["data.folds=5", "data.fold=-1"], "data.fold=-1: must be >= 0"),
    (["data.folds=5", "data.fold=all"], "data.fold=all: is one job per fold: add -m/--multirun"),
    (["-m", "data.fold=all"], "data.fold=all: needs data.folds=<k>, one number of folds for"),
    (["-m", "data.folds=3,5", "data.fold=all"], "data.fold=all: needs data.folds=<k>"),
    (["-m", "data.folds=3", "data.fold=1,3"], "data.fold=3: must be < data.folds=3: 0 to 2"),
    (["+seed=3"], "+seed: the key exists already"),
    (["trainer.precision=8"], "trainer.precision=8: must be one of: 32"),
    (
        ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"],
        "optimizer.nesterov=true: needs optimizer.momentum > 0",
    ),
    (["-m", "model.dropout=0,1.5"], "model.dropout=1.5: must be a rate in [0, 1)"),
    # every other group
    (["scheduler=exponential"], "scheduler=exponential: no such option in group 'scheduler'"),
    (
        ["scheduler=cosine", "scheduler.warmup_epochs=50"],
        "scheduler.warmup_epochs=50.0: must be < trainer.max_epochs=2",
    ),
    (["augment=extreme"], "augment=extreme: no such option in group 'augment'"),
    (["augment.mixup_alpha=-1"], "augment.mixup_alpha=-1.0: must be >= 0"),
    (
        ["logger=comet"],
        "logger=comet: no such option in group 'logger'; available: csv, mlflow, none, "
        "tensorboard, wandb",
    ),
    (["logger.wandb.mode=live"], "logger.wandb: unknown key 'logger.wandb'"),  # not selected
    (
        ["logger=wandb", "logger.wandb.mode=live"],
        "logger.wandb.mode=live: must be one of: offline, online, disabled",
    ),
    (
        ["callbacks=early_stopping", "callbacks.early_stopping.patience=-1"],
        "callbacks.early_stopping.patience=-1: must be >= 1",
    ),
    (
        ["callbacks=early_stopping", "callbacks.early_stopping.mode=up"],
        "callbacks.early_stopping.mode=up: must be one of: min, max",
    ),
    (["regularization.l2=-0.1"], "regularization.l2=-0.1: must be >= 0"),
    (["regularization.l1=abc"], "regularization.l1=abc: regularization.l1 must be a number"),
    (["loss.label_smoothing=1.5"], "loss.label_smoothing=1.5: must be a number in [0, 1]"),
    (["transfer=linear_probe"], "transfer=linear_probe needs a source"),
    (
        ["transfer=linear_probe", "transfer.source={tmp}", "transfer.bn=maybe"],
        "transfer.bn=maybe: must be one of: freeze, train",
    ),
    (["transfer.bn=freeze"], "transfer.bn=freeze: unknown key 'transfer.bn'"),  # scratch has none
    (
        ["transfer=finetune", "transfer.source={tmp}/missing.ckpt"],
        "transfer.source={tmp}/missing.ckpt: no such file or directory",
    ),
    (["+experiment=nonexistent"], "+experiment=nonexistent: no such option in group 'experiment'"),
    (["model=mlp", "model.hidden_sizes=[64,-1]"], "model.hidden_sizes=[64, -1]: must be >= 1"),
    (["data.classes=[1,x]"], "data.classes=[1,x]: data.classes[1] must be an integer"),
    (["data.classes=[1]"], "data.classes=[1]: must list two or more distinct class indices"),
    (
        ["data.train_samples=10", "data.train_samples_per_class=3"],
        "data.train_samples_per_class=3: cannot be combined with data.train_samples",
    ),
    (
        ["model=alexnet", "model.stem=imagenet"],
        "data.image_size=32: model alexnet with stem imagenet needs images of at least 63 px",
    ),
    (["model=vgg11", "model.residual=false"], "model.residual=false: unknown key 'model.residual'"),
    (["model.norm=instance"], "model.norm=instance: must be one of: none, batch, group, layer"),
    (
        ["model=mlp", "model.weight_standardization=true"],
        "model.weight_standardization=true: mlp has no convolution to standardize",
    ),
    (["trainer.devices=0"], "trainer.devices=0: must be auto, free, a count >= 1, -1 (all)"),
    (["trainer.devices=[0,1]"], "trainer: `devices` selected with `CPUAccelerator` should be"),
    (["semi.threshold=0.5"], "semi.threshold=0.5: unknown key 'semi.threshold'"),  # none's
    (
        ["semi=pseudo_label", "semi.threshold=1.5"],
        "semi.threshold=1.5: must be a number in (0, 1]",
    ),
    (["semi=pseudo_label", "semi.unlabeled_ratio=0"], "semi.unlabeled_ratio=0: must be >= 1"),
    (["resume={tmp}/missing"], "resume={tmp}/missing: must be a dlexp run directory"),
    # below a file: a folder even root cannot create (nothing is written)
    (["hydra.run.dir={tmp}/a_file/run"], "hydra.run.dir={tmp}/a_file/run: cannot write there"),
    (["data=imagefolder"], "data.root=???: is required but was not set"),
    (
        ["data=cifar10", "data.root={tmp}/missing", "data.download=false"],
        "data.root={tmp}/missing: CIFAR10 not found in {tmp}/missing/cifar-10-batches-py",
    ),
    # the Optuna sweeper: its keys, the objective's direction, the ends of the search space
    (
        ["+hparams_search=lenet5_optuna", "hydra.sweeper.pruner=asha"],
        "hydra.sweeper.pruner=asha: must be one of: median, hyperband, none",
    ),
    (
        ["+hparams_search=lenet5_optuna", "hydra.sweeper.direction=minimize"],
        "hydra.sweeper.direction=minimize: must be maximize: the objective, val/acc",
    ),
    (
        ["+hparams_search=lenet5_optuna", "model.dropout=interval(0.0, 1.5)"],
        "model.dropout=1.5: must be a rate in [0, 1)",
    ),
    (
        ["+hparams_search=lenet5_optuna", "optimizer.lr=interval(0.01, 0.001)"],
        "optimizer.lr='interval(0.01, 0.001)': a search interval needs low < high",
    ),
]


@pytest.mark.parametrize(
    "args,message", BAD_TRAIN_LINES, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_bad_train_line_exits_2_with_one_clear_line(tmp_path, capsys, args, message):
    (tmp_path / "a_file").write_text("a file, not a folder")
    args, message = [a.format(tmp=tmp_path) for a in args], message.format(tmp=tmp_path)
    code = run_inprocess("train", *args, *QUICK, cwd=tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert message in err[0]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.json"))


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    for args in (
        ["model=resnet999"],
        ["data=mnist", f"data.root={tmp_path / 'missing'}", "data.download=false"],
    ):
        done = run_cli("train", *args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert done.stderr.strip().startswith("error: dlexp train: ")
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing that looks like a run


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One finished run, a truncated copy of its checkpoint and other files bad on purpose."""
    root = tmp_path_factory.mktemp("bad_commands")
    run = root / "run"
    code = run_inprocess("train", *QUICK, "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=root)
    assert code == 0
    (ckpt,) = (run / "checkpoints").glob("epoch*.ckpt")
    shutil.copytree(run, root / "copy")  # a run dir whose checkpoint is cut in half
    truncated = root / "copy" / "checkpoints" / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    (root / "notes.txt").write_text("not an image")
    (root / "images").mkdir()
    write_png(torch.zeros(1, 32, 32, dtype=torch.uint8), root / "images" / "blank.png")
    (root / "empty").mkdir()  # a folder, but no run
    broken = root / "userconf" / "experiment" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("# @package _global_\ntrainer: {max_epochs: [1\n")
    return {"root": root, "run": run, "truncated": truncated}


# (command line and text the error line must contain, with {run}/{truncated}/{root}
# placeholders; {root}/missing does not exist, {root}/empty is an empty folder)
BAD_COMMAND_LINES = [
    (["eval", "ckpt={root}/empty"], "ckpt={root}/empty: no checkpoint found"),
    (["eval", "ckpt={root}/missing"], "ckpt={root}/missing: no such file or directory"),
    (["eval", "ckpt={truncated}"], "not a readable checkpoint, truncated or corrupt"),
    (["eval", "ckpt={run}", "data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["eval", "ckpt={run}", "model.norm=batch"], "dlexp eval cannot change model.norm"),
    (["eval", "ckpt={run}", "data.normalize=minmax"], "dlexp eval cannot change data.normalize"),
    (["eval", "ckpt={run}", "optimizer.lr=1"], "it takes: data, data.root,"),
    (["eval", "ckpt={run}", "seed=-1"], "seed=-1: must be a number in [0, 4294967296)"),
    (["predict", "ckpt={run}", "inputs={root}/images", "data.normalize=none"], "cannot change"),
    (["eval", "ckpt={run}", "bogus"], "bogus: expected key=value"),
    (["predict", "ckpt={run}"], "inputs: required"),
    (["predict", "ckpt={run}", "inputs={root}/missing.png"], "no such file or directory"),
    (["predict", "ckpt={run}", "inputs={root}/notes.txt"], "notes.txt: not a readable image"),
    (["predict", "ckpt={run}", "inputs={root}", "topk=0"], "topk=0: must be an integer >= 1"),
    (["predict", "ckpt={truncated}", "inputs={root}/images"], "truncated or corrupt"),
    (["report"], "the following arguments are required: paths"),
    (["report", "{root}/empty"], "{root}/empty: holds no runs"),
    (["report", "{root}/missing"], "{root}/missing: no such directory"),
    (["report", "{run}", "--metric", "test/bogus"], "--metric=test/bogus: must be one of"),
    (["models", "data=nope"], "data=nope: no such option in group 'data'"),
    (["models", "data.image_size=abc"], "data.image_size=abc: data.image_size must be an integer"),
    (["resume-sweep", "{run}"], "must be a sweep directory (with multirun.yaml)"),
    (["train", "transfer=finetune", "transfer.source={truncated}"], "truncated or corrupt"),
    (
        ["train", "transfer=gradual", "transfer.source={run}", "transfer.lr_growth=0.5"],
        "transfer.lr_growth=0.5: must be >= 1",
    ),
    (
        ["train", "--config-dir", "{root}/userconf", "+experiment=broken"],
        "broken.yaml: malformed YAML at line 3, column 1",
    ),
    (["trian"], "command=trian: unknown command; choose one of: train"),
]


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "args,message", BAD_COMMAND_LINES, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_bad_command_line_exits_2_with_one_clear_line(trained, capsys, args, message):
    places = {name: str(path) for name, path in trained.items()}
    args, message = [a.format(**places) for a in args], message.format(**places)
    before = _files(trained["root"])
    code = run_inprocess(*args, cwd=trained["root"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert message in err[0] and err[0].startswith("error: ")
    assert _files(trained["root"]) == before  # nothing written, nothing changed or lost


def test_unknown_command(capsys):
    from dlexp.cli import main

    assert main(["trian"]) == 2
    assert "command=trian: unknown command; choose one of: train" in capsys.readouterr().err

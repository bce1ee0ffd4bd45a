"""Bad command lines: exit 2, one readable line naming key, value and what is allowed."""

from __future__ import annotations

import pytest

from conftest import QUICK, run_cli, run_inprocess

# (command line, text the error line must contain)
BAD_TRAIN_LINES = [
    (["model=resnet999"], "model=resnet999: no such option in group 'model'; available:"),
    (["model.foo=1"], "model.foo=1: unknown key 'model.foo'"),
    (["model.dropout=1.5"], "model.dropout=1.5: must be a number in [0, 1)"),
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs=abc: trainer.max_epochs must be an integer"),
    (["optimizer.lr=-1"], "optimizer.lr=-1.0: must be > 0"),
    (
        ["data.val_fraction=0.5", "data.test_fraction=0.45"],
        "data.val_fraction+data.test_fraction=0.95: must be < 0.9",
    ),
    (
        ["data=mnist", "data.root=/nonexistent", "data.download=false"],
        "data.root=/nonexistent: MNIST not found in /nonexistent/MNIST/raw (expected "
        "train-images-idx3-ubyte.gz",
    ),
    (["model=mlp", "model.hidden_sizes=[64,a]"], "model.hidden_sizes=[64,a]: model.hidden_sizes"),
    (["seed=-1"], "seed=-1: must be a number in [0, 4294967296)"),
    (["model.activation=swish"], "model.activation=swish: must be one of: relu, leaky_relu"),
    (["data.normalize=zscore"], "data.normalize=zscore: must be one of: standardize, minmax"),
    (["optimizer=adagrad"], "optimizer=adagrad: no such option in group 'optimizer'"),
    (["seed=[1"], "seed=[1: cannot parse this override"),
    (["model.dropout=0,0.5"], "a list of values is a sweep; add -m/--multirun"),
    (["+seed=3"], "+seed: the key exists already"),
    (["trainer.precision=8"], "trainer.precision=8: must be one of: 32"),
    (
        ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.momentum=0"],
        "optimizer.nesterov=True: needs optimizer.momentum > 0",
    ),
    (["-m", "model.dropout=0,1.5"], "model.dropout=1.5: must be a number in [0, 1)"),
]


@pytest.mark.parametrize(
    "args,message", BAD_TRAIN_LINES, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_bad_train_line_exits_2_with_one_clear_line(tmp_path, capsys, args, message):
    code = run_inprocess("train", *args, *QUICK, cwd=tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert message in err[0]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.json"))


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    for args in (
        ["model=resnet999"],
        ["data=mnist", "data.root=/nonexistent", "data.download=false"],
    ):
        done = run_cli("train", *args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert done.stderr.strip().startswith("error: dlexp train: ")
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing that looks like a run


def test_unknown_command(capsys):
    from dlexp.cli import main

    assert main(["trian"]) == 2
    assert "command=trian: unknown command; choose one of: train" in capsys.readouterr().err

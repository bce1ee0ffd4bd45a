"""Hostile input never gives a traceback: one ``error:`` line of bounded length, exit 2,
refused in seconds, with nothing created or changed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import QUICK, UNPRIVILEGED, run_cli, run_inprocess

NAME = "n" * 300  # a path component longer than any file system takes (255 bytes)
DEEP = "/".join(["d" * 200] * 25)  # a path longer than PATH_MAX (4096) of short components
DIGITS = "9" * 5000  # beyond Python's int-string limit (4300 digits)
ITEMS = ",".join(["1"] * 20_000)
SEEDS = ",".join(str(i) for i in range(20_000))

# (command line, text the error line must contain); {tmp} is the test's temp dir.
HOSTILE_TRAIN = [
    ([f"hydra.run.dir={{tmp}}/{NAME}"], "hydra.run.dir="),
    ([f"hydra.run.dir={{tmp}}/{DEEP}"], "hydra.run.dir="),
    ([f"hydra.run.dir={DEEP}"], "hydra.run.dir="),  # relative
    (["hydra.run.dir={tmp}/" + "/".join(["e" * 200] * 19) + "/x" * 50], "hydra.run.dir="),
    (["-m", "seed=0,1", f"hydra.sweep.dir={{tmp}}/{NAME}"], "hydra.sweep.dir="),
    (["-m", "seed=0,1", f"hydra.sweep.dir={{tmp}}/{DEEP}"], "hydra.sweep.dir="),
    (["data=mnist", f"data.root={{tmp}}/{NAME}", "data.download=false"], "data.root="),
    (["data=mnist", f"data.root={{tmp}}/{DEEP}", "data.download=false"], "data.root="),
    (["data=imagefolder", f"data.root={{tmp}}/{NAME}"], "data.root="),
    (["transfer=finetune", f"transfer.source={{tmp}}/{NAME}"], "transfer.source="),
    (["transfer=finetune", f"transfer.source={{tmp}}/{DEEP}"], "transfer.source="),
    ([f"resume={{tmp}}/{NAME}"], "resume="),
    ([f"resume={{tmp}}/{DEEP}"], "resume="),
    ([f"seed={DIGITS}"], "seed=999"),
    ([f"trainer.max_epochs={DIGITS}"], "trainer.max_epochs=999"),
    ([f"data.batch_size=-{DIGITS}"], "data.batch_size=-999"),
    (["model=mlp", f"model.hidden_sizes=[64,{DIGITS}]"], "model.hidden_sizes=[64,999"),
    ([f"seed='{DIGITS}'"], "seed must be an integer"),
    (["-m", f"seed=0,{DIGITS}"], "seed=0,999"),
    (["trainer.max_epochs=10000000000000000000000000000000000000000"], "must be a number in"),
    (["data.batch_size=3000000000"], "data.batch_size=3000000000: must be a number in [1,"),
    (["model=mlp", "model.hidden_sizes=[64,4294967296]"], "model.hidden_sizes=[64, 4294967296]"),
    (["seed=1e400"], "seed=1e400: seed must be an integer"),
    (["optimizer.lr=1e400"], "optimizer.lr=inf: must be > 0"),
    (["trainer.log_every_n_steps=-99999999999999999999"], "trainer.log_every_n_steps"),
    (["model=mlp", f"model.hidden_sizes=[{ITEMS}]"], "model.hidden_sizes=[1,1,1"),
    ([f"data.classes=[{SEEDS}]"], "data.classes=[0,1,2"),
    (["-m", f"seed={SEEDS}"], "seed=0,1,2"),
    (["-m", "seed=range(0,20000)"], "sweep: more than 1000 jobs"),
    (["-m", "seed=range(0,10**12)"], "cannot parse"),
    (["-m", "seed=range(0,40)", "optimizer.lr=" + ",".join(["0.1"] * 30)], "sweep: 1200 jobs"),
    ([f"+x{i}=1" for i in range(20_000)], "20004 overrides: dlexp takes at most 1000"),
    ([f"seed={i}" for i in range(5000)], "5004 overrides"),
    (["+note=" + "x" * 50_000], "50006 characters"),
    ([f"model={NAME}"], "no such option in group 'model'"),
    ([f"+experiment={DEEP}"], "+experiment=ddd"),
]


@pytest.mark.parametrize("args,message", HOSTILE_TRAIN, ids=lambda a: _case_id(a))
def test_hostile_train_line_is_one_bounded_line(tmp_path, capsys, args, message):
    flags = [a for a in args if a == "-m"]
    rest = [a for a in args if a != "-m"]
    check_refused(tmp_path, capsys, "train", *flags, *QUICK, *rest, message=message)


def _case_id(value) -> str | None:
    if not isinstance(value, list):
        return None
    text = " ".join(value)
    return text if len(text) < 60 else f"{text[:40]}…({len(text)} chars)"


def check_refused(tmp_path: Path, capsys, *args: str, message: str) -> None:
    """``dlexp ARGS`` in this process: exit 2, one short ``error:`` line containing
    ``message``, within seconds, and ``tmp_path`` as it was."""
    args = tuple(a.replace("{tmp}", str(tmp_path)) for a in args)
    message = message.replace("{tmp}", str(tmp_path))
    before = tree(tmp_path)
    started = time.monotonic()
    code = run_inprocess(*args, cwd=tmp_path)
    seconds = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: dlexp "), err
    assert len(err[0]) < 500, len(err[0])
    assert message in err[0], err[0]
    assert seconds < 10, seconds
    assert tree(tmp_path) == before


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


# -- real processes: what only a fresh interpreter shows (tracebacks, import-time limits) --------


@pytest.mark.parametrize(
    "args",
    [
        ["train", f"seed={DIGITS}"],
        ["train", f"hydra.run.dir={{tmp}}/{NAME}"],
        ["train", "-m", "seed=range(0,20000)"],
        ["eval", f"ckpt={{tmp}}/{NAME}"],
        ["predict", f"ckpt={{tmp}}/{DEEP}", "inputs=x"],
        ["report", f"{{tmp}}/{NAME}"],
    ],
    ids=lambda a: _case_id(a),
)
def test_hostile_input_in_a_real_process_prints_no_traceback(tmp_path, args):
    before = tree(tmp_path)
    done = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert len(lines) == 1 and lines[0].startswith("error: dlexp ") and len(lines[0]) < 500
    assert tree(tmp_path) == before


# -- eval, predict and report on what a run dir holds -------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    args = [*QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=none"]
    assert run_inprocess("train", *args, f"hydra.run.dir={run}", cwd=root) == 0
    return run


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval", "ckpt={run}", f"seed={DIGITS}"], "seed=999"),
        (["eval", "ckpt={run}", "data.batch_size=10000000000000000000000"], "must be a number"),
        (["eval", "ckpt={run}", f"data.root={NAME}"], "data.root="),
        (["eval", "ckpt={run}", *(f"seed={i}" for i in range(2000))], "2001 overrides"),
        (["eval", "ckpt={run}", f"data.classes=[{SEEDS}]"], "data.classes=[0,1"),
        (["predict", "ckpt={run}", f"inputs={{tmp}}/{NAME}"], "inputs="),
        (["predict", "ckpt={run}", "inputs={tmp}", f"topk={DIGITS}"], "topk="),
    ],
    ids=lambda a: _case_id(a),
)
def test_hostile_eval_and_predict_lines_are_one_bounded_line(
    trained, tmp_path, capsys, args, message
):
    before = tree(trained)
    args = [a.replace("{run}", str(trained)) for a in args]
    check_refused(tmp_path, capsys, *args, message=message)
    assert tree(trained) == before


def test_eval_into_a_read_only_run_dir_is_refused_before_the_work(trained, tmp_path):
    before = tree(trained)
    trained.chmod(0o555)
    try:
        started = time.monotonic()
        done = run_cli("eval", f"ckpt={trained}", cwd=tmp_path, prefix=UNPRIVILEGED)
        seconds = time.monotonic() - started
    finally:
        trained.chmod(0o755)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "ckpt=" in lines[0] and "cannot write there" in lines[0], lines
    assert "Permission denied" in lines[0]
    assert "Testing" not in done.stdout + done.stderr  # refused before any test batch
    assert seconds < 30
    assert tree(trained) == before


RECORD = {
    "status": "completed",
    "overrides": ["seed=1"],
    "epochs": 1,
    "best_epoch": 1,
    "wall_seconds": 1.0,
    "best": {"val/acc": 0.5},
    "test": {"test/acc": 0.5},
}
EPOCHS = "epoch,val/acc,train/acc\n1,0.5,0.6\n"


def _with(**fields) -> str:
    return json.dumps({**RECORD, **fields})


@pytest.mark.parametrize(
    "files,message",
    [
        ({"metrics.json": "[]"}, "metrics.json: not a dlexp run record"),
        ({"metrics.json": "3"}, "not a dlexp run record"),
        ({"metrics.json": '"completed"'}, "not a dlexp run record"),
        ({"metrics.json": "null"}, "not a dlexp run record"),
        ({"metrics.json": "{}"}, "not a dlexp run record"),
        ({"metrics.json": '{"status": 5}'}, "not a dlexp run record"),
        ({"metrics.json": "{not json"}, "malformed JSON"),
        ({"metrics.json": b"\xff\xfe{}"}, "metrics.json"),
        ({"metrics.json": _with(test=[1, 2])}, "test is a list"),
        ({"metrics.json": _with(test={"test/acc": "high"})}, "test must map metric names"),
        ({"metrics.json": _with(best={"val/acc": None})}, "best must map metric names"),
        ({"metrics.json": _with(overrides="seed=1")}, "overrides is a str"),
        ({"metrics.json": _with(overrides=[1, 2])}, "overrides must be a list of strings"),
        ({"metrics.json": _with(epochs="two")}, "epochs is a str"),
        ({"metrics.json": _with(wall_seconds=True)}, "wall_seconds is a bool"),
        ({"metrics.json": _with(best_epoch=[1])}, "best_epoch is a list"),
        ({"epochs.csv": "epoch,val/acc\n1,high\n"}, "epochs.csv: line 2"),
        ({"epochs.csv": "epoch,val/acc\n1,0.5,0.7,0.9\n"}, "epochs.csv: line 2"),
        ({"epochs.csv": "epoch,val/acc\n1\n"}, "epochs.csv: line 2"),
        ({"epochs.csv": "val/acc\n0.5\n"}, "no epoch column"),
        ({"epochs.csv": "epoch,val/acc\n,0.5\n"}, "no epoch number"),
        ({"epochs.csv": b"epoch\n\xff\xfe\n"}, "epochs.csv"),
        ({"epochs.csv": 'epoch,val/acc\n"1,0.5\n'}, "epochs.csv"),
        ({"metrics.json": None, ".hydra/overrides.yaml": "[a, b"}, "malformed YAML"),
        ({"metrics.json": None, ".hydra/overrides.yaml": "{a: 1}"}, "not a list of override"),
        ({"metrics.json": None, ".hydra/overrides.yaml": "[1, 2]"}, "not a list of override"),
    ],
    ids=lambda a: _case_id([str(v)[:30] for v in a.values()]) if isinstance(a, dict) else None,
)
def test_report_on_a_malformed_run_record_is_one_line_naming_the_file(
    tmp_path, capsys, files, message
):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    contents = {"metrics.json": json.dumps(RECORD), "epochs.csv": EPOCHS, **files}
    for name, content in contents.items():
        if content is not None:
            write = (
                (run / name).write_bytes if isinstance(content, bytes) else (run / name).write_text
            )
            write(content)
    check_refused(tmp_path, capsys, "report", str(run), message=message)


def test_report_of_a_well_formed_record_passes_the_same_checks(tmp_path, capsys):
    """The record the malformed cases start from is one ``report`` reads."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(RECORD))
    (run / "epochs.csv").write_text(EPOCHS)
    assert run_inprocess("report", str(run), cwd=tmp_path) == 0
    assert "1 of 1 completed" in (run / "summary.md").read_text()


def test_an_error_echoing_a_long_value_is_cut_to_a_bounded_line():
    from dlexp.errors import ConfigError, one_line

    error = ConfigError("model.hidden_sizes", list(range(20_000)), "must be >= 1")
    assert len(str(error)) < 300 and str(error).startswith("model.hidden_sizes=[0, 1, 2, ")
    assert "…" in str(error) and str(error).endswith(", 19998, 19999]: must be >= 1")
    assert "\n" not in one_line("a\nb\n\nc") and len(one_line("x" * 10**6)) == 480

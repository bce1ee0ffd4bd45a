"""A run directory has one writer, and no run is written over another (dlexp/rundir.py).

The concurrency tests use real processes: a training that holds its run dir is paused
(SIGSTOP) once it holds the lock, so the second writer meets it deterministically.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlexp.errors import InputError
from dlexp.rundir import LOCK_NAME, acquire, claim_output_dir, holder

from conftest import (
    QUICK,
    REPO,
    read_epochs,
    read_metrics,
    run_cli,
    run_inprocess,
    run_python,
    start_cli,
    wait_for,
    write_png,
)

# A short run whose every step is cheap; max_epochs is set by each test.
SHORT = [
    *QUICK,
    "logger=none",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its mtime and size (directories included)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in [root, *root.rglob("*")]
    }


def contents(root: Path) -> dict[Path, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {p.relative_to(root): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


def lock_pid(run: Path) -> int | None:
    try:
        return json.loads((run / LOCK_NAME).read_text()).get("pid")
    except (OSError, ValueError):
        return None


def start_holder(tmp_path: Path, run: Path, epochs: int, until) -> subprocess.Popen:
    """A ``dlexp train`` into ``run``, paused once it holds the lock and ``until(run)``."""
    proc = start_cli("train", *SHORT, f"trainer.max_epochs={epochs}", f"hydra.run.dir={run}",
                     cwd=tmp_path)  # fmt: skip
    wait_for(lambda: lock_pid(run) == proc.pid and until(run), proc)
    proc.send_signal(signal.SIGSTOP)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once the child has stopped
    assert os.WIFSTOPPED(status), status
    return proc


def resume_holder(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()


def refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dlexp "), done.stderr
    return lines[0]


# -- one writer at a time ----------------------------------------------------------------------


def test_a_second_training_into_the_same_dir_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    first = start_holder(tmp_path, run, 2, lambda run: True)
    before = snapshot(run)
    second = run_cli("train", *SHORT, "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)
    line = refusal(second)
    assert f"in use by PID {first.pid} (dlexp train " in line
    assert snapshot(run) == before  # the refused one wrote nothing
    resume_holder(first)
    record = read_metrics(run)
    assert record["status"] == "completed" and record["epochs"] == 2
    assert [row["epoch"] for row in read_epochs(run)] == ["1", "2"]  # one run's rows
    assert "max_epochs: 2" in (run / "config.yaml").read_text()
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_resume_eval_and_predict_are_refused_while_a_training_holds_the_dir(tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    first = start_holder(tmp_path, run, 3, lambda run: last.is_file())
    write_png(torch.zeros(1, 8, 8, dtype=torch.uint8), tmp_path / "digit.png")
    before, record = snapshot(run), (run / "metrics.json").read_bytes()
    attempts = [
        ["train", f"resume={run}"],
        ["eval", f"ckpt={last}"],
        ["predict", f"ckpt={last}", f"inputs={tmp_path / 'digit.png'}"],
    ]
    for args in attempts:
        assert f"in use by PID {first.pid} " in refusal(run_cli(*args, cwd=tmp_path)), args
    assert snapshot(run) == before  # no eval.json, no predictions.csv, the record untouched
    assert (run / "metrics.json").read_bytes() == record
    resume_holder(first)
    assert read_metrics(run)["status"] == "completed"


def test_the_lock_of_a_killed_training_is_taken_over(tmp_path):
    run = tmp_path / "run"
    first = start_holder(tmp_path, run, 2, lambda run: (run / "metrics.json").is_file())
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert lock_pid(run) == first.pid  # its record is left, its lock is not
    assert holder(run) is None
    done = run_cli("train", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metrics(run)["status"] == "completed"
    assert not (run / LOCK_NAME).exists()


def test_racing_writers_one_wins_the_others_name_it(tmp_path):
    """Four processes lock one directory at the same moment: exactly one holds it."""
    run, go = tmp_path / "run", tmp_path / "go"
    code = f"""
import os, sys, time
from pathlib import Path
from dlexp.errors import InputError
from dlexp.rundir import acquire
Path({str(tmp_path)!r}, f"ready-{{os.getpid()}}").touch()  # imports done: waiting for go
while not Path({str(go)!r}).exists():
    time.sleep(0.001)
try:
    lock = acquire(Path({str(run)!r}), "run")
    print("won", os.getpid(), flush=True)
    time.sleep(3)  # well past the others' retries (about 1 s): they meet a held lock
    lock.release()
except InputError as exc:
    print("refused", exc, flush=True)
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(procs):  # all four start together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    winners = [o for o in outputs if o.startswith("won ")]
    assert len(winners) == 1, outputs
    pid = winners[0].split()[1]
    for out in outputs:
        assert out == winners[0] or out.startswith(f"refused run: in use by PID {pid} "), out
    # nothing was written and no lock file is left; the directory itself is removed by the
    # process that made it when it wins, and stays (empty) when a loser made it first
    assert not run.exists() or list(run.iterdir()) == []


def test_ranks_above_zero_neither_check_nor_lock(tmp_path, monkeypatch):
    """DDP ranks > 0 train in rank 0's directory: rank 0 holds it for them."""
    from dlexp.preflight import CheckedCommand

    from conftest import compose_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)  # rank 0 has started writing
    checked = CheckedCommand([compose_config()], multirun=False, output_dir=str(run))
    with pytest.raises(InputError, match="holds a run"):
        claim_output_dir(checked)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert claim_output_dir(checked) is None
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


# -- never overwrite a run ---------------------------------------------------------------------

# (what the directory holds, the refusal's words)
OCCUPIED = {
    "metrics.json": "holds a run (metrics.json)",
    "config.yaml": "holds a run (config.yaml)",
    "checkpoints/last.ckpt": "holds a run (checkpoints)",
    "epochs.csv": "holds a run (epochs.csv)",
    ".hydra/overrides.yaml": "holds a run (.hydra)",
    "notes.txt": "is not empty and holds no dlexp run (notes.txt)",
    ".hidden": "is not empty and holds no dlexp run (.hidden)",
    "data/": "is not empty and holds no dlexp run (data)",
}


@pytest.mark.parametrize("content", OCCUPIED)
def test_training_into_an_occupied_dir_is_refused_and_changes_nothing(tmp_path, capsys, content):
    run = tmp_path / "run"
    path = run / content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if content.endswith("/") else path.write_text("[]\n")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_inprocess("train", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: dlexp train: hydra.run.dir={run}: {OCCUPIED[content]}")
    assert "another hydra.run.dir" in line and "overwrite=true" in line
    assert ("resume=" in line) == ("holds a run" in line)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", ["multirun.yaml", "0/metrics.json", "notes.txt"])
def test_a_new_sweep_into_an_occupied_sweep_dir_is_refused(tmp_path, capsys, content):
    sweep = tmp_path / "sweep"
    (sweep / content).parent.mkdir(parents=True, exist_ok=True)
    (sweep / content).write_text("{}\n")
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = run_inprocess("train", "-m", *SHORT, "seed=1,2", f"hydra.sweep.dir={sweep}",
                         cwd=tmp_path)  # fmt: skip
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: dlexp train: hydra.sweep.dir={sweep}: ")
    assert f"dlexp resume-sweep {sweep}" in line and "overwrite=true" in line
    assert snapshot(tmp_path) == before


def test_the_refusal_needs_neither_torch_nor_lightning(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    code = f"from dlexp.cli import main; print(main(['train', 'hydra.run.dir={tmp_path}/run']))"
    done, heavy = run_python(code, tmp_path)
    assert done.stdout.strip() == "2" and "holds a run (metrics.json)" in done.stderr
    assert heavy == []


def test_overwrite_true_archives_the_old_run_then_trains_afresh(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", *SHORT, "trainer.max_epochs=1", f"hydra.run.dir={run}"]
    assert run_inprocess(*args, cwd=tmp_path) == 0
    old = contents(run)
    before = snapshot(run)
    capsys.readouterr()
    assert run_inprocess(*args, "seed=1", cwd=tmp_path) == 2
    assert "resume=" in capsys.readouterr().err
    assert snapshot(run) == before

    assert run_inprocess(*args, "seed=1", "overwrite=true", cwd=tmp_path) == 0
    archived = run / "attempts" / "1"
    assert contents(archived) == old  # every file and folder of the old run, as it was
    record = read_metrics(run)
    assert record["status"] == "completed" and "seed=1" in record["overrides"]
    assert "seed: 1" in (run / "config.yaml").read_text()
    assert "seed=1" in (run / ".hydra" / "overrides.yaml").read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch001.ckpt", "last.ckpt"]


def test_overwrite_and_resume_together_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_inprocess("train", f"resume={run}", "overwrite=true", cwd=tmp_path) == 2
    assert "overwrite=true: cannot be combined with resume=" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_an_empty_or_missing_dir_takes_a_new_run_and_a_lock_left_alone_is_no_obstacle(tmp_path):
    """An empty dir and one holding only a dead process's lock file count as empty."""
    from dlexp.preflight import CheckedCommand

    from conftest import compose_config

    config = compose_config()
    for name, prepare in (("missing", None), ("empty", "mkdir"), ("stale", "lock")):
        run = tmp_path / name
        if prepare:
            run.mkdir()
        if prepare == "lock":
            (run / LOCK_NAME).write_text('{"pid": 1, "command": "dlexp train"}\n')
        checked = CheckedCommand([config], multirun=False, output_dir=str(run))
        with claim_output_dir(checked):
            assert lock_pid(run) == os.getpid()
            with pytest.raises(InputError, match=f"in use by PID {os.getpid()} "):
                subprocess_acquire(run)
        assert not run.exists() or list(run.iterdir()) == []


def subprocess_acquire(run: Path) -> None:
    """Try to lock ``run`` from another process; raise its refusal here."""
    code = (
        "from pathlib import Path; from dlexp.rundir import acquire\n"
        f"acquire(Path({str(run)!r}), 'run')"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:
        raise InputError(done.stderr.strip().splitlines()[-1])


def test_a_process_that_holds_a_dir_may_enter_it_again(tmp_path):
    with acquire(tmp_path / "run", "run") as lock:
        assert acquire(tmp_path / "run", "run") is None  # the job inside a held single run
        assert lock.directory == (tmp_path / "run").resolve()

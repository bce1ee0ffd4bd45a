"""A sweep counts each way a job ended apart (diverged is not failed), on the console and in
``summary.csv``/``summary.md``; a disk that fills up never leaves a half-written file."""

from __future__ import annotations

import csv
import errno
import json
import subprocess
from pathlib import Path

import pytest

from conftest import QUICK, read_epochs, read_metrics, run_cli, run_inprocess

FAST = [*QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=none"]


def test_a_sweep_counts_diverged_jobs_apart_from_failed_ones(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    code = run_inprocess(
        "train",
        "-m",
        *QUICK,
        "trainer.max_epochs=1",
        "logger=none",
        "optimizer=sgd",
        "optimizer.lr=1e6,0.01",  # 1e6 diverges
        "+callbacks.boom._target_=conftest.ExplodeAtEpoch",
        "+callbacks.boom.epoch=1,99",  # 1 fails before the first step
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert code == 1
    assert "sweep: 1 of 4 completed, 1 diverged, 2 failed" in capsys.readouterr().err
    statuses = [read_metrics(sweep / j)["status"] for j in "0123"]
    assert statuses == ["failed", "diverged", "failed", "completed"]
    with open(sweep / "summary.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == statuses
    assert "1 of 4 completed, 1 diverged, 2 failed." in (sweep / "summary.md").read_text()


def test_the_counts_name_every_ending_in_a_fixed_order():
    from dlexp.reports.summary import count_statuses

    ended = ["completed", "bad_input", "failed", "interrupted", "diverged", "diverged", "corrupt"]
    assert count_statuses(ended) == (
        "1 of 7 completed, 2 diverged, 1 failed, 1 interrupted, 1 bad_input, 1 corrupt"
    )
    assert count_statuses(["completed"] * 3) == "3 of 3 completed"


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1.2 MB tmpfs under tmp_path: room for one checkpoint of the default model, not two."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_ends_the_run_as_failed_with_one_line_and_whole_files(small_disk, tmp_path):
    run = small_disk / "run"
    done = run_cli("train", *FAST, "trainer.max_epochs=2", f"hydra.run.dir={run}", cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
    assert read_metrics(run)["status"] == "failed"  # valid JSON, the ending recorded
    assert len(read_epochs(run)) >= 1
    assert not list(run.rglob("*.tmp"))  # no half-written temporary file left behind


def _fill_up_on(name: str, when: bytes, monkeypatch) -> None:
    """Writes of ``name`` whose data contains ``when`` stop halfway with ENOSPC, as a full disk
    does (what the rename-based writes of dlexp.io must survive)."""
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name.startswith(f".{name}.") and when in data:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize(
    "name,when,status,epochs",
    [
        ("metrics.json", b'"status": "completed"', "running", 2),  # the last write: old kept
        ("epochs.csv", b"\n2,", "failed", 1),  # the second epoch's row
    ],
)
def test_a_full_disk_while_writing_keeps_the_old_file_whole(
    tmp_path, capsys, monkeypatch, name, when, status, epochs
):
    run = tmp_path / "run"
    _fill_up_on(name, when, monkeypatch)
    code = run_inprocess(
        "train", *FAST, "trainer.max_epochs=2", f"hydra.run.dir={run}", cwd=tmp_path
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert len(err) == 1 and "No space left on device" in err[0], err
    record = json.loads((run / "metrics.json").read_text())  # whole: the old content or the new
    assert record["status"] == status
    assert len(read_epochs(run)) == epochs
    assert not list(run.rglob("*.tmp"))

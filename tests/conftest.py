"""Shared test helpers: run dlexp in-process or as a real subprocess, read run outputs."""

from __future__ import annotations

import atexit
import csv
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from dlexp.config.data import DataConfig

# The suite runs in parallel workers (make test: pytest -n 2), one per core: each worker and
# each process it starts gets one thread. More threads than cores make OpenMP's spinning
# threads wait on each other and slow every test down many times over.
os.environ["OMP_NUM_THREADS"] = "1"
# Libraries' caches (matplotlib's font list, torch hub) go to this session's own temp dir,
# never into the user's home: tests write nothing outside temporary folders.
_CACHES = tempfile.mkdtemp(prefix="dlexp-tests-")
atexit.register(shutil.rmtree, _CACHES, ignore_errors=True)
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHES, "matplotlib")
os.environ["TORCH_HOME"] = os.path.join(_CACHES, "torch")
os.environ["XDG_CACHE_HOME"] = os.path.join(_CACHES, "cache")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_CACHES, "config")
# The trackers (logger=mlflow, logger=wandb) keep their settings and caches there too, and
# send no usage telemetry: tests never reach the network.
for _var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
    os.environ[_var] = os.path.join(_CACHES, "wandb")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ.pop("WANDB_MODE", None)  # logger=wandb's own default (offline) is what is tested
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Small, quiet runs for tests: two epochs, no progress bar, no model summary.
QUICK = [
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


# -- tests write into their temp dirs, never into the checkout (outputs/ aside) ------------------

# Paths of the checkout that may appear during a session: the virtual environment, runs started
# by hand (outputs/) and the tools' caches.
_ALLOWED_DIRS = (".venv", "outputs")
_CACHES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
_STRAYS_BEFORE = pytest.StashKey[frozenset]()
_STRAYS_REPORT = pytest.StashKey[list]()


def stray_files(repo: Path) -> frozenset[str] | None:
    """The untracked and ignored files of the git checkout ``repo`` (relative paths), less
    ``.venv/``, ``outputs/``, the interpreter's own environment and caches; None where git
    cannot tell (no git, or not a checkout: an unpacked sdist)."""
    allowed = list(_ALLOWED_DIRS)
    prefix = Path(sys.prefix).resolve()
    if prefix.is_relative_to(repo.resolve()) and prefix != repo.resolve():
        allowed.append(prefix.relative_to(repo.resolve()).as_posix())  # make VENV=<other>
    command = ["git", "--no-optional-locks", "status", "--porcelain", "-z", "--ignored"]
    command += ["--untracked-files=all", "--", ".", *(f":(exclude){d}" for d in allowed)]
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    found, entries = set(), iter(filter(None, done.stdout.split("\0")))
    for entry in entries:
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            next(entries, None)  # a rename's or copy's source path follows
        if status not in ("??", "!!"):
            continue
        parts = Path(path).parts
        if any(part in _CACHES or part.endswith(".egg-info") for part in parts):
            continue
        found.add(path)
    return frozenset(found)


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller checks
        return
    before = stray_files(REPO)
    if before is not None:
        session.config.stash[_STRAYS_BEFORE] = before


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when files appeared in the checkout while it ran (outside outputs/)."""
    if hasattr(session.config, "workerinput") or _STRAYS_BEFORE not in session.config.stash:
        return
    after = stray_files(REPO)
    new = sorted((after or frozenset()) - session.config.stash[_STRAYS_BEFORE])
    if not new:
        return
    lines = [
        f"{len(new)} file(s) appeared in the checkout {REPO} during the tests (tests must write "
        "under their tmp_path, never into the repository; run only the suspects to find the "
        "writer):",
        *(f"  {path}" for path in new[:50]),
        *([f"  ... and {len(new) - 50} more"] if len(new) > 50 else []),
    ]
    session.config.stash[_STRAYS_REPORT] = lines
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        print("\n".join(lines), file=sys.stderr)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_STRAYS_REPORT, None)
    if lines:
        terminalreporter.section("files written into the checkout", sep="=", red=True, bold=True)
        for line in lines:
            terminalreporter.write_line(line)


# Prefix of a command that runs it as root without capabilities: file modes bind it as they bind
# any user (the tests run as root, whom chmod alone blocks nothing).
UNPRIVILEGED = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ``python -m dlexp ARGS`` in a fresh process (exit codes, stderr, signals);
    ``prefix`` runs it through another command (e.g. :data:`UNPRIVILEGED`)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dlexp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m dlexp ARGS`` in the background (signals, concurrent writers)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "dlexp", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Poll ``condition`` until it holds; fail when ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


HEAVY = ("torch", "torchvision", "pytorch_lightning", "lightning", "lightning_fabric")


def run_python(code: str, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``python -c code`` in a fresh interpreter importing this checkout's dlexp; the process
    and the top-level packages of :data:`HEAVY` it had imported by the end."""
    probe = (
        f"{code}\nimport sys as _s, json as _j\n"
        f"print(_j.dumps(sorted({{m.split('.')[0] for m in _s.modules}} & {set(HEAVY)!r})),"
        " file=_s.stderr)\n"
    )
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    full_env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    heavy = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else None
    assert heavy is not None, done.stderr
    return done, heavy


def run_inprocess(*args: str, cwd: Path, capsys=None) -> int:
    """Run ``dlexp ARGS`` in this process (fast: imports are paid once)."""
    from dlexp.cli import main

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)


def write_png(image: torch.Tensor, path: Path) -> None:
    """A ``(1, H, W)`` uint8 tensor as a grayscale PNG."""
    from PIL import Image

    Image.fromarray(image[0].numpy()).save(path)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_epochs(run_dir: Path) -> list[dict[str, str]]:
    """The rows of the run's ``epochs.csv``, one per epoch."""
    with open(run_dir / "epochs.csv") as f:
        return list(csv.DictReader(f))


def only_run_dir(root: Path) -> Path:
    """The single run directory under ``root/outputs/runs``."""
    runs = sorted((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A writable data root holding the official MNIST files (skip when the copy is absent)."""
    raw = SHARED_DATA / "MNIST" / "raw"
    if not raw.is_dir():
        pytest.skip(f"no MNIST files in {raw}")
    target = tmp_path / "data" / "MNIST" / "raw"
    target.mkdir(parents=True)
    for f in raw.iterdir():
        (target / f.name).symlink_to(f)
    return tmp_path / "data"


class ExplodeAtEpoch:
    """A Lightning callback that raises at the start of epoch ``epoch`` (a job forced to fail)."""

    def __new__(cls, epoch: int):
        import pytorch_lightning as pl

        class _Explode(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch + 1 >= epoch:
                    raise RuntimeError(f"exploding at epoch {epoch} as the test asked")

        return _Explode()


class PoisonAtStep:
    """A Lightning callback that makes the model's weights NaN before training batch ``step``
    (counted from 0): that step's loss, and every later one, is NaN."""

    def __new__(cls, step: int):
        import pytorch_lightning as pl

        class _Poison(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == step:
                    with torch.no_grad():
                        next(pl_module.model.parameters()).fill_(float("nan"))

        return _Poison()


@functools.cache
def augment_config(level: str, *overrides: str):
    """The typed ``augment`` node that ``augment=<level> overrides`` composes to."""
    return compose_config(f"augment={level}", *overrides).augment


def compose_config(*overrides: str):
    """The typed :class:`~dlexp.config.Config` that ``dlexp train overrides`` composes to."""
    from dlexp.config import register_configs
    from dlexp.preflight import check_command_line

    register_configs()
    return check_command_line(list(overrides), files=False).configs[0]


@dataclasses.dataclass
class NaturalConfig(DataConfig):
    """The schema of :func:`natural_images`: CIFAR-shaped images whose mirror keeps the label."""

    native_size: ClassVar[int] = 32
    native_channels: ClassVar[int] = 3
    flip_ok: ClassVar[bool] = True
    name: str = "natural"


def natural_images(total: int, test: int) -> type:
    """A dataset class of ``total`` random CIFAR-shaped images (3x32x32 uint8, 10 classes)
    of a flip-safe kind; the last ``test`` of them are its test split."""
    from dlexp.data.base import ImageDataModule, RawData, Split

    class NaturalImages(ImageDataModule):
        def load(self) -> RawData:
            g = torch.Generator().manual_seed(0)
            images = torch.randint(0, 256, (total, 3, 32, 32), generator=g, dtype=torch.uint8)
            labels = torch.arange(total) % 10
            cut = total - test
            return RawData(
                Split(images[:cut], labels[:cut]),
                Split(images[cut:], labels[cut:]),
                10,
                [str(i) for i in range(10)],
            )

    return NaturalImages

"""dlexp as a real package: the sdist and the wheel ship the configs and the Hydra plugin, a
non-editable install trains from any directory, ``dlexp --version``; and the guard that keeps
tests from writing into the checkout.

The package is built offline from a copy of the checkout (building in place would leave
``build/`` and ``*.egg-info`` in it), the way ``python -m build`` does: the sdist first, the
wheel from the unpacked sdist, so a file the sdist forgets is missing from the wheel too.
Every child process gets its home, temp and cache folders under the test's temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import dlexp

from conftest import REPO, run_cli, run_python, stray_files

TINY_RUN = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "logger=none",
]


def contained_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process that writes nothing outside ``tmp``."""
    places = {
        "HOME": tmp / "home",
        "TMPDIR": tmp / "tmp",
        "XDG_CACHE_HOME": tmp / "home" / ".cache",
        "XDG_CONFIG_HOME": tmp / "home" / ".config",
        "MPLCONFIGDIR": tmp / "home" / "matplotlib",
    }
    for place in places.values():
        place.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", GIT_OPTIONAL_LOCKS="0")
    env.update({key: str(place) for key, place in places.items()})
    for key in ("PYTHONPATH", "HYDRA_FULL_ERROR", "PIP_TARGET", "PIP_USER"):
        env.pop(key, None)
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def copy_of_checkout(dest: Path) -> Path:
    """The files of the checkout that git does not ignore (tracked or new), copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),
    )
    if listed.returncode != 0:  # not a git checkout
        caches = ("__pycache__", "*.egg-info", ".*_cache", "build", "dist", "outputs")
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".git", ".venv", *caches))
        return dest
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from a copy of the checkout, the wheel installed (not
    editable) into a folder of its own."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools")
    tmp = tmp_path_factory.mktemp("package")
    env = contained_env(tmp)
    source = copy_of_checkout(tmp / "source")
    dist = tmp / "dist"
    build_sdist = (
        "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    )
    run([sys.executable, "-c", build_sdist, str(dist)], cwd=source, env=env)
    (sdist,) = dist.glob("dlexp-*.tar.gz")
    with tarfile.open(sdist) as archive:
        # the "data" filter where this Python has it (3.11.4+, 3.10.12+): plain files only
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(tmp / "unpacked", **safe)
    (unpacked,) = (tmp / "unpacked").iterdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    wheel_cmd = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."]
    run(wheel_cmd, cwd=unpacked, env=env)
    (wheel,) = dist.glob("dlexp-*.whl")
    site = tmp / "site"
    run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], cwd=tmp, env=env)
    return {"tmp": tmp, "source": source, "sdist": sdist, "wheel": wheel, "site": site}


def shipped(package: dict[str, Path]) -> set[str]:
    """The package files of the source tree that both archives must hold: every config YAML,
    every module of dlexp and of the Hydra plugin."""
    source = package["source"]
    files = {*(source / "dlexp").rglob("*.py"), *(source / "hydra_plugins").rglob("*.py")}
    files |= set((source / "dlexp" / "conf").rglob("*.yaml"))
    names = {f.relative_to(source).as_posix() for f in files}
    assert "dlexp/conf/config.yaml" in names and "hydra_plugins/dlexp_sweeper/__init__.py" in names
    return names


def test_sdist_and_wheel_hold_the_configs_and_the_hydra_plugin(package):
    wanted = shipped(package)
    with tarfile.open(package["sdist"]) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert wanted - in_sdist == set()
    assert {"pyproject.toml", "README.md"} <= in_sdist
    with zipfile.ZipFile(package["wheel"]) as archive:
        in_wheel = set(archive.namelist())
        (metadata,) = (n for n in in_wheel if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata).decode()
    assert wanted - in_wheel == set()
    assert not [name for name in in_wheel if name.startswith(("tests/", "bench/"))]
    assert f"\nVersion: {dlexp.__version__}\n" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: torch>=") for line in requires), requires
    assert not [line for line in requires if "==" in line.split(";")[0]]  # ranges, no pins


def test_the_installed_wheel_trains_from_any_directory(package):
    """Not editable, not the checkout: configs and plugin come from the installed package."""
    tmp, site = package["tmp"], package["site"]
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = contained_env(tmp, PYTHONPATH=str(site))
    python = [sys.executable, "-c"]
    where = (
        "import dlexp, hydra_plugins.dlexp_sweeper as p; print(dlexp.__file__); print(p.__file__)"
    )
    for module in run([*python, where], cwd=cwd, env=env).stdout.split():
        assert Path(module).resolve().is_relative_to(site.resolve()), module

    version = f"dlexp {dlexp.__version__}\n"
    assert run([sys.executable, "-m", "dlexp", "--version"], cwd=cwd, env=env).stdout == version
    assert run([str(site / "bin" / "dlexp"), "-V"], cwd=cwd, env=env).stdout == version

    composed = run([sys.executable, "-m", "dlexp", "train", "--cfg", "job"], cwd=cwd, env=env)
    cfg = yaml.safe_load(composed.stdout)
    assert cfg["data"]["name"] == "digits" and cfg["model"]["name"] == "lenet5", composed.stdout

    run_dir = tmp / "run"
    train = [sys.executable, "-m", "dlexp", "train", *TINY_RUN, f"hydra.run.dir={run_dir}"]
    run(train, cwd=cwd, env=env)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed", record
    assert record["versions"]["dlexp"] == dlexp.__version__
    hydra_cfg = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    (main,) = [
        s for s in hydra_cfg["hydra"]["runtime"]["config_sources"] if s["provider"] == "main"
    ]
    if main["schema"] == "file":  # (a pkg:// source is found through the dlexp imported above)
        assert Path(main["path"]).resolve().is_relative_to(site.resolve()), main
    assert list(cwd.iterdir()) == []  # the run went to hydra.run.dir, nothing to the cwd


def test_version_prints_and_imports_neither_torch_nor_lightning(tmp_path):
    done = run_cli("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"dlexp {dlexp.__version__}\n"), done.stderr
    probe = (
        "import sys; from dlexp.cli import main; code = main(['-V']); "
        "print(code, sorted({'hydra', 'omegaconf'} & set(sys.modules)))"
    )
    done, heavy = run_python(probe, cwd=tmp_path)
    assert done.stdout.splitlines() == [f"dlexp {dlexp.__version__}", "0 []"], done.stderr
    assert heavy == []


def test_stray_files_are_the_new_untracked_and_ignored_files(tmp_path):
    """What the session guard of conftest.py reports: not the venv, outputs/ or caches."""
    if shutil.which("git") is None:
        pytest.skip("no git")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / ".gitignore").write_text("/checkpoints/\n*.log\n.venv/\noutputs/\n")
    (repo / "kept.py").write_text("")
    subprocess.run(["git", "add", "kept.py", ".gitignore"], cwd=repo, check=True, env=env)
    assert stray_files(repo) == frozenset()
    strays = {"checkpoints/epoch=0-step=300.ckpt", "my notes.txt", "deep/er/train.log"}
    allowed = {
        ".venv/lib/site.py",
        "outputs/runs/1/metrics.json",
        "pkg/__pycache__/m.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.1/x",
        "dlexp.egg-info/PKG-INFO",
    }
    for name in strays | allowed:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    assert stray_files(repo) == strays
    (tmp_path / "plain").mkdir()
    assert stray_files(tmp_path / "plain") is None  # no checkout: nothing to tell

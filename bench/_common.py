"""What the benches share: where the real data is, composed configs, child processes.

Nothing here imports torch or Lightning at import time, so every bench's ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

DATA_ENV = "DLEXP_DATA"
DATA_HELP = (
    "folder holding the official MNIST / Fashion-MNIST .gz files in torchvision's layout "
    "(DIR/MNIST/raw/*.gz, DIR/FashionMNIST/raw/*.gz); read only, never written "
    f"(default: ${DATA_ENV})"
)
SOURCES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A bench's argument parser: its docstring's first line as the description, the rest
    (what it measures, how to read its figures) as the epilog of ``--help``."""
    return argparse.ArgumentParser(
        description=doc.splitlines()[0],
        epilog="\n".join(doc.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run_dlexp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m dlexp ARGS`` in a child process (see :func:`child_env`), run in ``cwd``;
    raises if it fails, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "dlexp", *args],
        check=True, capture_output=True, text=True, cwd=cwd, env=child_env(),
    )  # fmt: skip


def add_data_option(parser: argparse.ArgumentParser, help: str = DATA_HELP) -> None:
    """``--data DIR``, defaulting to the ``DLEXP_DATA`` environment variable."""
    parser.add_argument("--data", type=Path, metavar="DIR", default=None, help=help)


def data_dir(args: argparse.Namespace, needs: str, layout: str = "MNIST/raw/*.gz") -> Path:
    """The data folder from ``--data`` or ``$DLEXP_DATA``; exit 2 with one line if neither.

    ``needs`` says what the bench needs it for (``"real MNIST"``); ``layout`` what it holds.
    """
    given = args.data or (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    if given is None:
        fail(f"needs {needs}: pass --data DIR or set {DATA_ENV}=DIR, DIR holding {layout}")
    return given.expanduser().resolve()


def fail(message: str) -> None:
    """One line on stderr, exit status 2 (bad input), as dlexp itself does."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    sys.exit(2)


def official_files(source: Path, names: list[str]) -> dict[str, list[Path]]:
    """The ``.gz`` files of each dlexp data name under ``source``; exit 2 if one has none."""
    found = {}
    for name in names:
        raw = source / SOURCES[name] / "raw"
        found[name] = sorted(raw.glob("*.gz")) if raw.is_dir() else []
        if not found[name]:
            fail(f"no {SOURCES[name]}/raw/*.gz under {source} (--data / ${DATA_ENV})")
    return found


def linked_data_root(source: Path, names: list[str], root: Path) -> Path:
    """A writable data root under ``root`` whose ``<NAME>/raw`` links the files in ``source``.

    torchvision's MNIST unpacks the ``.gz`` archives next to them, so the textbook pipeline
    cannot read a read-only folder in place (dlexp can); the links keep the official files
    untouched. ``names`` are dlexp data
    names (``mnist``, ``fashion_mnist``).
    """
    for name, files in official_files(source, names).items():
        target = root / SOURCES[name] / "raw"
        target.mkdir(parents=True)
        for f in files:
            (target / f.name).symlink_to(f.resolve())
    return root


def composed(overrides: list[str]):
    """The config of one ``dlexp train`` job, as dlexp composes and checks it.

    Read it by attribute only (``cfg.data.batch_size``); its nodes are typed configs.
    """
    from dlexp.config import register_configs
    from dlexp.preflight import check_command_line

    register_configs()
    return check_command_line(overrides).configs[0]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``python -m dlexp``: it imports the dlexp this process does.

    Children run in a temporary working directory, so ``PYTHONPATH`` gets the folder of the
    ``dlexp`` package this interpreter finds, ahead of its other (absolute) entries.
    """
    spec = importlib.util.find_spec("dlexp")  # does not import it
    given = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    entries = [str(Path(p).resolve()) for p in given]
    if spec is not None and spec.origin:
        entries.insert(0, str(Path(spec.origin).resolve().parent.parent))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(entries)), **extra)


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """Run in-process ``dlexp train`` calls from ``path``: whatever lands in the cwd goes there."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)

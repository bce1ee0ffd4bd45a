"""``dlexp inspect``: a trained run's layer pictures again, or the activation functions.

``dlexp inspect <run dir|.ckpt> [out=<dir>]`` draws the first-layer filters and the stages'
feature maps of the checkpoint (a run directory: its best checkpoint, the one the run tested
and drew at its end) on the run's fixed test images, into ``<run dir>/layers/`` (or ``out``).
``dlexp inspect activations [out=<png>]`` plots every ``model.activation`` and its derivative.
Arguments are checked, and the run's config read, before torch is imported.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from dlexp.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from dlexp.inspect import LAYERS_FOLDER

USAGE = """usage: dlexp inspect <run dir|.ckpt> [out=<dir>]
       dlexp inspect activations [out=<png>]

The first form draws what a trained model's layers learned: its first-layer filters (an MLP:
its first layer's units as images) and the feature maps of each stage for the run's fixed
test images, as PNGs in out (default: <run dir>/layers, where every run draws them at its
end). A run directory stands for its best checkpoint. The second form plots every activation
option (model.activation) and its derivative on one figure (default:
outputs/activations.png). For a run directory named "activations", give ./activations.
"""
ALLOWED = ("out",)
DEFAULT_ACTIVATIONS_PNG = Path("outputs") / "activations.png"


def inspect_command(args: list[str]) -> int:
    """Entry point of ``dlexp inspect``."""
    from dlexp.cli import key_values

    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_BAD_INPUT
    target, options = args[0], key_values(args[1:], "inspect")
    for key, value in options.items():
        if key not in ALLOWED:
            raise InputError(
                f"{key}={value}: unknown key; dlexp inspect takes {', '.join(ALLOWED)}"
            )
    if target == "activations":
        return _activations(Path(options.get("out") or DEFAULT_ACTIVATIONS_PNG).expanduser())
    return _layers(target, options.get("out"))


def _activations(out: Path) -> int:
    if out.is_dir():
        raise InputError(f"out={out}: a directory; give the path of the PNG to write")
    from dlexp.inspect.activations import activations_figure

    print(f"wrote {activations_figure(out)}")
    return EXIT_OK


def checkpoint_of(target: str) -> tuple[Path, Path]:
    """The checkpoint and run directory ``target`` (a run directory or a .ckpt) stands for."""
    from dlexp.run_config import resolve_checkpoint, run_dir_of

    path = Path(target).expanduser()
    if not path.exists():
        raise InputError(f"{target}: no such run directory or checkpoint")
    if path.is_dir() and not (path / "config.yaml").is_file():
        raise InputError(f"{target}: not a dlexp run directory (no config.yaml in it)")
    ckpt = resolve_checkpoint(path, "run")
    run_dir = run_dir_of(ckpt)
    if run_dir is None:
        raise InputError(f"{target}: no config.yaml beside it (inspect needs the run's directory)")
    return ckpt, run_dir


def _layers(target: str, out: str | None) -> int:
    from dlexp.run_config import saved_config
    from dlexp.rundir import acquire

    ckpt, run_dir = checkpoint_of(target)
    folder = Path(out).expanduser() if out else run_dir / LAYERS_FOLDER
    if folder.exists() and not folder.is_dir():
        raise InputError(f"out={folder}: not a directory")
    cfg = saved_config(run_dir)
    in_run = folder.absolute().is_relative_to(run_dir.absolute())  # one writer per run dir
    lock = acquire(run_dir, f"out={folder} (in the run dir {run_dir})") if in_run else None
    with lock or nullcontext():
        from dlexp.checkpoints import lightning_state_dict, restore_for_test, safe_load
        from dlexp.inspect.callbacks import fixed_images, write_pictures
        from dlexp.inspect.layers import layer_pictures

        state = lightning_state_dict(safe_load(ckpt, "run"), ckpt, "run")
        data, module = restore_for_test(cfg, state, key="run", shown=str(ckpt))
        images = fixed_images(data.test_split)
        pictures = layer_pictures(module.model, module.input_transform, images)
        written = write_pictures(pictures, folder)
    print(f"{ckpt}: first layer {pictures.filters_of}, {len(pictures.feature_maps)} stages")
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK

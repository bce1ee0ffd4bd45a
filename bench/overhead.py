"""dlexp's training speed against a hand-written PyTorch loop, as a ratio. Target >= 0.95.

Both sides train the same model (built by dlexp), on the same batches (dlexp's data module),
with the same optimizer, learning-rate schedule, loss (label smoothing), batch size and
epochs, in this process, one after the other, and evaluate on the validation split after
every epoch as any training script does; the loop also counts its training accuracy. Steps/s
counts the training steps over the time of the epochs (training plus validation). Each
repeat runs hand, dlexp, dlexp, hand (this machine's speed drifts by 10-30 % within
minutes), and the ratio dlexp / hand-written loop is printed per workload, as the median
over the repeats with every repeat's ratio: 1.0 means dlexp trains as fast as the loop,
0.9 that it takes 1/0.9 = 1.11x the loop's time.

Workloads (``--workloads``, both by default):

* ``lenet5-mnist``: LeNet-5 on a subset of real MNIST, read from ``--data DIR`` or
  ``$DLEXP_DATA`` (DIR/MNIST/raw/*.gz, never written: unpacked in a temporary folder of links);
* ``resnet20-cifar``: ResNet-20 on CIFAR-shaped data (random images written as CIFAR-10
  batch files in a temporary folder; no data needed).

All runs write into a temporary directory. Usage:
    python bench/overhead.py [--data DIR] [--repeats 3] [--epochs 2] [--workloads ...]
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_data_option, composed, data_dir, working_dir

WORKLOADS = ("lenet5-mnist", "resnet20-cifar")
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "trainer.num_sanity_val_steps=0",
]


def fake_cifar10(root: Path, train: int, test: int) -> Path:
    """Random uint8 images in the official CIFAR-10 python format (``cifar-10-batches-py``)."""
    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_batch = math.ceil(train / 5)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        entry = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=n).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def dlexp_run(overrides: list[str], epochs: int) -> float:
    """Training steps per second of ``dlexp train`` (in this process)."""
    from dlexp.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        code = main(
            [
                "train",
                f"hydra.run.dir={run_dir}",
                f"trainer.max_epochs={epochs}",
                *QUIET,
                *overrides,
            ]
        )
        assert code == 0, f"dlexp train failed ({code})"
        record = json.loads((run_dir / "metrics.json").read_text())
        seconds = [float(line.split(",")[-1]) for line in _rows(run_dir / "epochs.csv")]
    batch = composed(overrides).data.batch_size
    steps = math.ceil(record["data"]["train"] / batch) * epochs
    return steps / sum(seconds)


def _rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0].endswith(",seconds")
    return lines[1:]


def hand_run(overrides: list[str], epochs: int) -> float:
    """Training steps per second of a plain PyTorch loop on the same model and batches."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate

    from dlexp.config.scheduler import scheduler_factory
    from dlexp.data import build_datamodule
    from dlexp.loss import ClassificationLoss
    from dlexp.models import build_model

    cfg = composed([*overrides, *QUIET])
    pl.seed_everything(cfg.seed, verbose=False)
    data = build_datamodule(cfg.data, seed=cfg.seed, augment=cfg.augment)
    data.setup("fit")
    model = build_model(
        cfg.model,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
    )
    normalize = data.normalizer
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    criterion = ClassificationLoss(cfg.loss.label_smoothing)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    schedule = scheduler_factory(cfg.scheduler)
    schedule = schedule and schedule(
        optimizer, total_steps=len(train_loader) * epochs, max_epochs=epochs
    )
    per_step = schedule is not None and schedule.get("interval") == "step"
    steps, seconds = 0, 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        correct = 0
        for images, targets in train_loader:
            logits = model(normalize(images))
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:
                schedule["scheduler"].step()
            correct += int((logits.argmax(1) == targets).sum())
            steps += 1
        model.eval()
        val_correct, val_loss = 0, 0.0
        with torch.no_grad():
            for images, targets in val_loader:
                logits = model(normalize(images))
                val_loss += float(F.cross_entropy(logits, targets, reduction="sum"))
                val_correct += int((logits.argmax(1) == targets).sum())
        if schedule is not None and not per_step:
            schedule["scheduler"].step()
        seconds += time.perf_counter() - started
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    add_data_option(parser)
    parser.add_argument("--mnist-samples", type=int, default=20000, help="training images")
    parser.add_argument("--cifar-samples", type=int, default=4000, help="training images")
    args = parser.parse_args()
    if "lenet5-mnist" in args.workloads:
        source = data_dir(args, "real MNIST (or --workloads resnet20-cifar)")
    with tempfile.TemporaryDirectory() as tmp, working_dir(Path(tmp)):
        workloads = {}
        if "lenet5-mnist" in args.workloads:
            workloads["lenet5 / MNIST"] = [
                "data=mnist",
                f"data.root={source}",
                "data.download=false",
                "data.download=true",  # the archives are there: unpacked, not fetched
                f"data.train_samples={args.mnist_samples}",
                "data.val_fraction=0.02",  # 1,200 images
                "model=lenet5",
            ]
        if "resnet20-cifar" in args.workloads:
            cifar = fake_cifar10(Path(tmp) / "cifar", train=args.cifar_samples, test=500)
            workloads["resnet20 / CIFAR-shaped"] = [
                "data=cifar10",
                f"data.root={cifar}",
                "data.download=false",
                "data.verify_md5=false",
                "data.val_fraction=0.05",
                "model=resnet20",
            ]
        import torch

        print(f"threads: {torch.get_num_threads()}, epochs: {args.epochs}, repeats: {args.repeats}")
        for name, overrides in workloads.items():
            dlexp_run(overrides, 1)  # warm-up: imports, first-call allocations
            ratios, ours, theirs = [], [], []
            for _ in range(args.repeats):
                # hand, dlexp, dlexp, hand: a drift in the machine's speed cancels out
                first = hand_run(overrides, args.epochs)
                mine = statistics.mean(dlexp_run(overrides, args.epochs) for _ in range(2))
                hand = statistics.mean([first, hand_run(overrides, args.epochs)])
                ours.append(mine)
                theirs.append(hand)
                ratios.append(mine / hand)
                print(f"  {name}: dlexp {mine:.2f}, hand {hand:.2f} steps/s", flush=True)
            print(
                f"{name}: dlexp {statistics.median(ours):.2f} steps/s, hand-written loop "
                f"{statistics.median(theirs):.2f} steps/s, ratio {statistics.median(ratios):.3f} "
                f"(each repeat: {', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.95)",
                flush=True,
            )


if __name__ == "__main__":
    main()

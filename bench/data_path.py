"""Epoch time of dlexp's data paths on MNIST: memory vs DataLoader vs a hand-written loop.

Trains the same small MLP (``model=mlp``: 784-256-128-10) on real MNIST (54,000 training
and 6,000 validation images, batch 128, Adam) for ``--epochs`` epochs four ways, side by
side in one process, and prints the fastest epoch of each (training + validation pass):

* ``dlexp memory``: ``dlexp train data.loader=memory`` (the default);
* ``dlexp dataloader``: ``dlexp train data.loader=dataloader`` (torch DataLoader, 0 workers);
* ``hand-written``: a plain PyTorch loop over the same uint8 tensors held in memory, batches
  drawn by index, the same normalization, model and recipe (Adam, the OneCycle schedule,
  label smoothing; training accuracy counted), no Lightning;
* ``torchvision loader``: the textbook pipeline, hand-written: ``torchvision.datasets.MNIST``
  with ``ToTensor`` and ``Normalize`` per image, through a DataLoader (0 workers).

Targets: the memory path >= 5x faster than the DataLoader path, and within 1.2x of the
hand-written loop. dlexp's own DataLoader path already serves decoded uint8 tensors and
normalizes whole batches inside the model, so the per-image PIL conversion that makes the
textbook pipeline slow is gone from both of dlexp's paths; the 5x is therefore measured
against the torchvision pipeline too, and both ratios are printed (a ratio "A / B" above 1
means A takes that many times B's time per epoch).

The four are measured one after the other in one process (fastest of ``--epochs`` epochs
each), so a drift in the machine's speed between them shows in the ratios; run it twice if
they matter. MNIST is read from ``--data DIR`` or ``$DLEXP_DATA`` (DIR/MNIST/raw/*.gz, the
official files, never written: dlexp and torchvision unpack them in a temporary folder of
links); all runs write into a temporary directory. Usage:
    python bench/data_path.py --data DIR [--epochs 2] [--augment none]
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

from _common import add_data_option, bench_parser, composed, data_dir, linked_data_root, working_dir


def dlexp_epoch_seconds(root: Path, loader: str, epochs: int, augment: str, tmp: Path) -> float:
    """The fastest epoch of ``dlexp train`` (in this process) with ``data.loader=loader``."""
    from dlexp.cli import main

    run_dir = tmp / f"run_{loader}"
    with working_dir(tmp):
        code = main(
            [
                "train",
                f"hydra.run.dir={run_dir}",
                "data=mnist",
                f"data.root={root}",
                f"data.loader={loader}",
                "model=mlp",
                f"augment={augment}",
                f"trainer.max_epochs={epochs}",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "trainer.accelerator=cpu",
                "logger=csv",
            ]
        )
    assert code == 0, f"dlexp train exited with {code}"
    with open(run_dir / "epochs.csv", newline="") as f:
        return min(float(row["seconds"]) for row in csv.DictReader(f))


def hand_written_epoch_seconds(root: Path, epochs: int) -> float:
    """The fastest epoch of a plain in-memory PyTorch loop on the same splits, model, recipe."""
    import torch
    from hydra.utils import instantiate

    from dlexp.config.scheduler import scheduler_factory
    from dlexp.data import build_datamodule
    from dlexp.loss import ClassificationLoss
    from dlexp.models import build_model

    cfg = composed(["data=mnist", f"data.root={root}", "model=mlp"])
    dm = build_datamodule(cfg.data, seed=42)
    dm.setup("fit")
    torch.manual_seed(42)
    model = build_model(cfg.model, in_channels=1, num_classes=10, image_size=28)
    normalize = dm.normalizer
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    criterion = ClassificationLoss(cfg.loss.label_smoothing)
    x, y = dm.train_split.images, dm.train_split.labels
    vx, vy = dm.val_split.images, dm.val_split.labels
    batch = cfg.data.batch_size
    steps = -(-len(y) // batch)
    schedule = scheduler_factory(cfg.scheduler)(
        optimizer, total_steps=steps * epochs, max_epochs=epochs
    )["scheduler"]  # the default OneCycle, stepped per batch
    best = float("inf")
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        correct = 0
        for index in torch.randperm(len(y)).split(batch):
            logits = model(normalize(x[index]))
            loss = criterion(logits, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == y[index]).sum())
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(normalize(vx[i : i + 128])).argmax(1) == vy[i : i + 128]).sum().item()
                for i in range(0, len(vy), 128)
            )
        assert correct > 0.9 * len(vy)
        best = min(best, time.perf_counter() - start)
    return best


def torchvision_epoch_seconds(root: Path, epochs: int) -> float:
    """The fastest epoch of the textbook loop: torchvision's MNIST, transforms per image."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    from dlexp.models import build_model

    cfg = composed(["data=mnist", f"data.root={root}", "model=mlp"])
    to_input = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    full = datasets.MNIST(root, train=True, transform=to_input, download=True)  # unpacks only
    train, val = random_split(full, [54_000, 6_000], generator=torch.Generator().manual_seed(42))
    train_loader = DataLoader(train, batch_size=128, shuffle=True)
    val_loader = DataLoader(val, batch_size=128)
    torch.manual_seed(42)
    model = build_model(cfg.model, in_channels=1, num_classes=10, image_size=28)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = float("inf")
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in val_loader)
        assert correct > 0.9 * 6_000
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=2, help="fastest of this many epochs")
    parser.add_argument("--augment", default="none", help="augment level for both dlexp paths")
    add_data_option(parser)
    args = parser.parse_args()
    source = data_dir(args, "real MNIST")
    with tempfile.TemporaryDirectory() as tmp:
        root = source  # read in place: dlexp reads the official .gz files without writing
        hand = hand_written_epoch_seconds(root, args.epochs)
        print(f"hand-written: {hand:.2f} s/epoch", flush=True)
        memory = dlexp_epoch_seconds(root, "memory", args.epochs, args.augment, Path(tmp))
        print(f"dlexp memory: {memory:.2f} s/epoch", flush=True)
        loader = dlexp_epoch_seconds(root, "dataloader", args.epochs, args.augment, Path(tmp))
        print(f"dlexp dataloader: {loader:.2f} s/epoch", flush=True)
        unpackable = linked_data_root(source, ["mnist"], Path(tmp) / "unpacked")
        textbook = torchvision_epoch_seconds(unpackable, args.epochs)
    import torch

    print(
        f"MNIST, model=mlp, batch 128, augment={args.augment}, fastest of {args.epochs} epochs "
        f"(train + val), torch threads {torch.get_num_threads()}"
    )
    print(f"{'path':<18} {'s/epoch':>8}")
    for name, seconds in (
        ("dlexp memory", memory),
        ("dlexp dataloader", loader),
        ("hand-written", hand),
        ("torchvision loader", textbook),
    ):
        print(f"{name:<18} {seconds:>8.2f}")
    print(f"torchvision loader / dlexp memory: {textbook / memory:.2f}x  (target >= 5)")
    print(f"dlexp dataloader / dlexp memory:   {loader / memory:.2f}x  (target >= 5)")
    print(f"dlexp memory / hand-written:       {memory / hand:.2f}x  (target <= 1.2)")


if __name__ == "__main__":
    main()

"""Images per second of each augmentation level on CIFAR-shaped data, on this machine's CPU.

Serves the training split of an in-memory set of 3x32x32 uint8 images (random, generated in
memory: no data files needed) through the training data path a ``dlexp train`` run uses,
with each ``augment=<level>`` as dlexp composes it:

* ``--loader dataloader``: ``ImageDataModule.train_dataloader`` with ``data.loader=dataloader``
  (per-image torchvision.transforms.v2 in the dataset, MixUp/CutMix in the collate function);
* ``--loader memory``: the in-memory path (``data.loader=memory``, batched augmentation).

The levels are timed in interleaved rounds (one epoch of each level per round, the order
reversed every other round), so a drift in the machine's speed hits all of them alike. Each
level prints the best epoch's images/s and its ratio to ``none``: 0.5 means the level halves
the rate at which training batches are served (the model's own cost is not included).

    python bench/augment.py [--images 10000] [--batch-size 128] [--workers 0]
        [--loader dataloader|memory] [--repeats 2]
"""

from __future__ import annotations

import time

from _common import bench_parser, composed

LEVELS = ("none", "basic", "standard", "strong")  # dlexp.data.augment.AUGMENT_LEVELS


def epoch_rate(dm) -> float:
    """Images/s of one pass over the training loader."""
    loader = dm.train_dataloader()
    start = time.perf_counter()
    seen = sum(len(batch[0]) for batch in loader)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--images", type=int, default=10_000, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--loader", choices=("dataloader", "memory"), default="dataloader")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; best epoch of each level")
    args = parser.parse_args()

    import torch

    from dlexp.data.augment import AUGMENT_LEVELS
    from dlexp.data.base import ImageDataModule, RawData, Split

    assert tuple(AUGMENT_LEVELS) == LEVELS, AUGMENT_LEVELS

    class CIFARShaped(ImageDataModule):
        """Random uint8 images of CIFAR's shape; flip-safe like CIFAR."""

        native_size = 32
        native_channels = 3
        flip_ok = True

        def load(self) -> RawData:
            g = torch.Generator().manual_seed(0)
            n = args.images
            images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
            labels = torch.arange(n) % 10
            test = Split(images[:100], labels[:100])
            return RawData(Split(images, labels), test, 10, [str(i) for i in range(10)])

    data_overrides = [
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        f"data.loader={args.loader}",
        "data.val_fraction=0.01",
    ]
    modules = {}
    for level in LEVELS:
        cfg = composed([f"augment={level}", *data_overrides])
        modules[level] = CIFARShaped(cfg.data, seed=0, augment=cfg.augment)
        modules[level].setup("fit")
    print(
        f"training data.loader={args.loader}, {args.images} images of 3x32x32 uint8, "
        f"batch {cfg.data.batch_size}, {cfg.data.num_workers} workers, "
        f"torch threads {torch.get_num_threads()}, best of {args.repeats} interleaved epochs"
    )
    best = dict.fromkeys(LEVELS, 0.0)
    for r in range(args.repeats):
        for level in LEVELS if r % 2 == 0 else reversed(LEVELS):
            best[level] = max(best[level], epoch_rate(modules[level]))
    print(f"{'level':<10} {'images/s':>10} {'vs none':>8}")
    for level in LEVELS:
        print(f"{level:<10} {best[level]:>10,.0f} {best[level] / best['none']:>8.3f}")


if __name__ == "__main__":
    main()

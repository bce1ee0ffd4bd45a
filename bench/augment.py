"""Images per second of each augmentation level on CIFAR-shaped data, on this machine's CPU.

Serves the training split of an in-memory set of 3x32x32 uint8 images through the real
training DataLoader path (``ImageDataModule.train_dataloader``: per-image
torchvision.transforms.v2 in the dataset, MixUp/CutMix in the collate function) and
prints images/s per level and the ratio to ``none``, measured side by side.
``--loader memory`` measures the in-memory path instead (batched augmentation).

    PYTHONPATH=$PWD python bench/augment.py [--images 10000] [--batch-size 128] [--workers 0]
        [--loader dataloader|memory]
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from dlexp.config import register_configs
from dlexp.data.augment import AUGMENT_LEVELS, AugmentConfig
from dlexp.data.base import DataConfig, ImageDataModule, RawData, Split
from dlexp.preflight import check_command_line


class CIFARShaped(ImageDataModule):
    """Random uint8 images of CIFAR's shape; flip-safe like CIFAR."""

    native_size = 32
    flip_ok = True
    count = 10_000

    def load(self) -> RawData:
        g = torch.Generator().manual_seed(0)
        n = self.count
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % 10
        test = Split(images[:100], labels[:100])
        return RawData(Split(images, labels), test, 10, [str(i) for i in range(10)])


def augment_config(level: str) -> AugmentConfig:
    cfg = check_command_line([f"augment={level}"])[0].augment
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), cfg))


def images_per_second(dm: ImageDataModule, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        loader = dm.train_dataloader()
        start = time.perf_counter()
        seen = sum(len(batch[0]) for batch in loader)
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--loader", choices=("dataloader", "memory"), default="dataloader")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many epochs")
    args = parser.parse_args()

    register_configs()
    CIFARShaped.count = args.images
    data_cfg = DataConfig(
        name="cifar_shaped",
        batch_size=args.batch_size,
        num_workers=args.workers,
        loader=args.loader,
        val_fraction=0.01,
    )
    print(
        f"training data.loader={args.loader}, {args.images} images of 3x32x32 uint8, "
        f"batch {args.batch_size}, "
        f"{args.workers} workers, torch threads {torch.get_num_threads()}"
    )
    print(f"{'level':<10} {'images/s':>10} {'vs none':>8}")
    baseline = None
    for level in AUGMENT_LEVELS:
        dm = CIFARShaped(data_cfg, seed=0, augment=augment_config(level))
        dm.setup("fit")
        rate = images_per_second(dm, args.repeats)
        baseline = baseline or rate
        print(f"{level:<10} {rate:>10,.0f} {rate / baseline:>8.3f}")


if __name__ == "__main__":
    main()

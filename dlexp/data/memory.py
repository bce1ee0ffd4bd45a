"""The in-memory data path (``data.loader=memory``): batches drawn by index from a tensor.

A split is one uint8 tensor on the training device; :class:`MemoryBatches` serves it as
batches of ``(images, labels)`` gathered by index, augmented batch-wise on that device
(:func:`dlexp.data.augment.batch_transform`, then MixUp/CutMix), with no worker processes
and no per-image Python (the technique of the fastest CIFAR-10 trainers).

Shuffling and augmentation draw from a generator seeded by ``(seed, epoch)``: Lightning
calls ``sampler.set_epoch`` before each epoch, so a run resumed at an epoch boundary draws
exactly the batches an uninterrupted run would. Under DDP each rank takes a disjoint,
equally long shard of the epoch's permutation (padded by wrapping, as
``DistributedSampler`` does), so every rank runs the same number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from dlexp.data.augment import BatchMix


def drops_single_last(n: int, batch_size: int) -> bool:
    """Whether a training epoch of ``n`` samples leaves a last batch of one sample, which is
    dropped: BatchNorm cannot train on one sample ("Expected more than 1 value per channel")."""
    return n > 1 and batch_size > 1 and n % batch_size == 1


class EpochSeed:
    """The epoch Lightning is in (``set_epoch``) and the per-epoch seed derived from it.

    It sits where Lightning looks for a sampler (``loader.sampler.set_epoch``).
    """

    def __init__(self, seed: int) -> None:
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)


class MemoryBatches:
    """An iterable of ``(images, labels)`` batches over tensors held in memory.

    ``shuffle`` draws a fresh permutation per epoch; ``augment`` (a batched transform) and
    ``mix`` (:class:`BatchMix`) apply to each batch in turn. ``rank``/``world_size`` shard
    the split between DDP processes. Batches stay on the tensors' device. A shuffled
    (training) epoch drops a last batch of one sample (BatchNorm cannot train on it).
    ``samples``: a shuffled epoch of that many images, drawn as consecutive permutations
    (a small labeled subset alongside a larger unlabeled set); 0: the split once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment=None,
        mix: BatchMix | None = None,
        rank: int = 0,
        world_size: int = 1,
        samples: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.samples = samples if shuffle else 0
        self.batch_size, self.shuffle = batch_size, shuffle
        self.augment, self.mix = augment, mix
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSeed(seed)
        self.batch_sampler = None  # Lightning inspects loaders as it would a DataLoader

    def _indices(self, gen: torch.Generator) -> torch.Tensor:
        n = self.samples or len(self.labels)
        if self.samples:
            count = len(self.labels)
            rounds = [torch.randperm(count, generator=gen) for _ in range(-(-n // count))]
            order = torch.cat(rounds)[:n]
        else:
            order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.world_size == 1:
            return order
        if self.shuffle:  # equal shards, so that every rank runs the same number of steps
            total = math.ceil(n / self.world_size) * self.world_size
            order = torch.cat([order, order[: total - n]])
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = self.samples or len(self.labels)
        if self.world_size > 1:
            n = (
                math.ceil(n / self.world_size)
                if self.shuffle
                else len(range(self.rank, n, self.world_size))
            )
        return n // self.batch_size if self._drops_last(n) else math.ceil(n / self.batch_size)

    def _drops_last(self, n: int) -> bool:
        return self.shuffle and drops_single_last(n, self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = self.sampler.generator()
        order = self._indices(gen).to(self.images.device)
        if self._drops_last(len(order)):
            order = order[:-1]
        batches = order.split(self.batch_size)
        mix_seeds = []  # one per batch, drawn (and read) once per epoch
        if self.mix is not None:
            mix_seeds = torch.randint(2**62, (len(batches),), generator=gen).tolist()
        for i, index in enumerate(batches):
            images, labels = self.images[index], self.labels[index]
            if self.augment is not None:
                images = self.augment(images, gen)
            if self.mix is not None:
                with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG
                    torch.manual_seed(mix_seeds[i])
                    images, labels = self.mix(images, labels)
            yield images, labels

"""Training batches of labeled and unlabeled images together (``semi=pseudo_label``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch


class _BothEpochs:
    """Where Lightning sets the epoch (``loader.sampler.set_epoch``): passed to both loaders."""

    def __init__(self, *loaders: Iterable) -> None:
        self.samplers = [getattr(loader, "sampler", None) for loader in loaders]

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)


class LabeledAndUnlabeled:
    """Batches ``(images, labels, unlabeled_images)``: a labeled batch of ``labeled`` and
    the images of the next batch of ``unlabeled`` (whose labels, -1, are not passed on).

    An epoch is one pass over the shorter of the two (the data module sizes ``labeled`` to
    the unlabeled epoch). The first two items are a plain labeled batch, so every callback
    that reads ``batch[0]`` and ``batch[1]`` sees what it would without unlabeled data.
    """

    def __init__(self, labeled: Iterable, unlabeled: Iterable) -> None:
        self.labeled, self.unlabeled = labeled, unlabeled
        self.sampler = _BothEpochs(labeled, unlabeled)
        self.batch_sampler = None  # Lightning inspects loaders as it would a DataLoader

    def __len__(self) -> int:
        return min(len(self.labeled), len(self.unlabeled))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for (images, labels), unlabeled in zip(self.labeled, self.unlabeled, strict=False):
            yield images, labels, unlabeled[0]

"""Splits of a dataset: held-out splits, k-fold cross-validation folds, a subset of classes,
stratified seeded subsamples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from dlexp.errors import ConfigError


@dataclass
class Split:
    """Images (uint8, NxCxHxW) and integer labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> Split:
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(self.images[index], self.labels[index])


@dataclass
class RawData:
    """What a dataset's ``load`` returns; ``test`` is None when the source has none."""

    train: Split
    test: Split | None
    num_classes: int
    class_names: list[str]


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off ``fraction`` of ``split`` with the same class proportions, from ``seed``."""
    index = torch.arange(len(split))
    keep, take = train_test_split(
        index.numpy(), test_size=fraction, stratify=split.labels.numpy(), random_state=seed
    )
    return split.subset(sorted(keep)), split.subset(sorted(take))


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """The indices of each of ``folds`` folds of ``labels`` (a partition, sorted, each fold
    with the class proportions of the whole), shuffled from ``seed`` (``data.folds``)."""
    counts = torch.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if smallest < folds:
        raise ConfigError(
            "data.folds",
            folds,
            f"must be <= {smallest}, the images of the smallest class in the training split "
            "(every fold needs one of each class)",
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        torch.as_tensor(np.sort(val), dtype=torch.long)
        for _, val in splitter.split(np.zeros(len(labels)), labels.numpy())
    ]


def fold_split(split: Split, folds: int, fold: int, seed: int) -> tuple[Split, Split]:
    """Fold ``fold`` of :func:`stratified_folds` as the validation part, the other folds as
    the training part (``data.fold``)."""
    held_out = stratified_folds(split.labels, folds, seed)[fold]
    keep = torch.ones(len(split), dtype=torch.bool)
    keep[held_out] = False
    return split.subset(keep.nonzero().flatten()), split.subset(held_out)


def select_classes(raw: RawData, classes: list[int]) -> RawData:
    """Keep the images of ``classes`` only, relabelled ``0..k-1`` in the order listed."""
    bad = [c for c in classes if c >= raw.num_classes]
    if bad:
        raise ConfigError(
            "data.classes",
            list(classes),
            f"class indices must be < {raw.num_classes} (this dataset's classes: "
            f"{', '.join(f'{i}={n}' for i, n in enumerate(raw.class_names))})",
        )
    relabel = torch.full((raw.num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))

    def keep(split: Split | None) -> Split | None:
        if split is None:
            return None
        new = relabel[split.labels]
        index = (new >= 0).nonzero().flatten()
        return Split(split.images[index], new[index])

    names = [raw.class_names[c] for c in classes]
    return RawData(keep(raw.train), keep(raw.test), len(classes), names)


def subsample(split: Split, seed: int, *, total: int | None, per_class: int | None) -> Split:
    """A stratified subsample of ``split`` drawn from ``seed``.

    ``total``: that many images, with the class proportions of ``split``. ``per_class``:
    exactly that many images of every class. Neither: ``split`` itself.
    """
    if per_class is not None:
        return _per_class(split, seed, per_class)
    if total is None or total == len(split):
        return split
    if total > len(split):
        raise ConfigError(
            "data.train_samples",
            total,
            f"must be <= {len(split)}, the training images left after the validation split",
        )
    try:
        keep, _ = train_test_split(
            torch.arange(len(split)).numpy(),
            train_size=total,
            stratify=split.labels.numpy(),
            random_state=seed,
        )
    except ValueError as exc:  # fewer images than classes on one side of the split
        raise ConfigError("data.train_samples", total, f"cannot stratify: {exc}") from None
    return split.subset(sorted(keep))


def _per_class(split: Split, seed: int, count: int) -> Split:
    return split.subset(_per_class_index(split, seed, count, "data.train_samples_per_class"))


def _per_class_index(split: Split, seed: int, count: int, key: str, spare: int = 0) -> torch.Tensor:
    """The sorted indices of ``count`` images of every class, drawn from ``seed``; a class
    with fewer than ``count + spare`` images is a :class:`ConfigError` for ``key``."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in split.labels.unique().tolist():
        index = (split.labels == label).nonzero().flatten()
        if len(index) < count + spare:
            more = f" (and {spare} more left unlabeled)" if spare else ""
            raise ConfigError(
                key,
                count,
                f"class {label} has only {len(index)} training images after the validation "
                f"split; needs {count}{more}",
            )
        chosen.append(index[torch.randperm(len(index), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def split_unlabeled(split: Split, seed: int, per_class: int) -> tuple[Split, Split]:
    """``per_class`` images of every class keep their labels (the images
    ``subsample(per_class=...)`` keeps); the rest of ``split`` becomes unlabeled: its images,
    with every label replaced by -1 here, so that nothing downstream can read one."""
    labeled = _per_class_index(split, seed, per_class, "semi.labels_per_class", spare=1)
    rest = torch.ones(len(split), dtype=torch.bool)
    rest[labeled] = False
    unlabeled = split.images[rest]
    return split.subset(labeled), Split(unlabeled, torch.full((len(unlabeled),), -1))

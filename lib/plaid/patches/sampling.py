"""Balanced patch sampling: every calcification patch plus an equal number of random normal patches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PatchIndex:
    """Flat table of candidate patches: which image, which grid patch, and its label (1 = calcification)."""

    image: np.ndarray
    patch: np.ndarray
    label: np.ndarray

    @classmethod
    def from_images(
        cls, labels_per_image: Sequence[np.ndarray], eligible_per_image: Sequence[np.ndarray] | None = None
    ) -> PatchIndex:
        """Build the table from per-image boolean patch labels.

        ``eligible_per_image`` (e.g. the tissue patches) restricts which *negatives* may be drawn;
        positives are always kept.
        """
        images, patches, labels = [], [], []
        for number, patch_labels in enumerate(labels_per_image):
            patch_labels = np.asarray(patch_labels, dtype=bool)
            keep = np.ones_like(patch_labels) if eligible_per_image is None else np.asarray(
                eligible_per_image[number], dtype=bool
            )
            chosen = np.flatnonzero(patch_labels | keep)
            images.append(np.full(len(chosen), number, dtype=np.int64))
            patches.append(chosen.astype(np.int64))
            labels.append(patch_labels[chosen].astype(np.int64))
        return cls(_concat(images), _concat(patches), _concat(labels))

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, rows: np.ndarray) -> PatchIndex:
        """The table restricted to ``rows``."""
        return PatchIndex(self.image[rows], self.patch[rows], self.label[rows])


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class BalancedSampler:
    """Draws all positives plus ``negative_ratio`` times as many random negatives, seeded.

    With ``redraw_each_epoch`` the negatives change every epoch (seed + epoch); otherwise every
    epoch reuses the first draw. ``max_negatives_per_image`` caps how many negatives one image gives.
    ``extra_positives`` (positives made elsewhere, e.g. inserted calcifications) count toward the number
    of negatives drawn.
    """

    def __init__(
        self,
        index: PatchIndex,
        seed: int = 0,
        negative_ratio: float = 1.0,
        redraw_each_epoch: bool = True,
        max_negatives_per_image: int | None = None,
        extra_positives: int = 0,
    ) -> None:
        if negative_ratio < 0:
            raise ValueError(f"negative_ratio must be >= 0, got {negative_ratio}")
        self.index = index
        self.seed = int(seed)
        self.negative_ratio = float(negative_ratio)
        self.redraw_each_epoch = redraw_each_epoch
        self.max_negatives_per_image = max_negatives_per_image
        self.positive_rows = np.flatnonzero(index.label == 1)
        self.negative_rows = np.flatnonzero(index.label == 0)
        self.extra_positives = int(extra_positives)

    def _negative_pool(self, rng: np.random.Generator) -> np.ndarray:
        """Negatives allowed by the per-image cap (a random subset of each image's negatives)."""
        if self.max_negatives_per_image is None:
            return self.negative_rows
        kept = []
        owners = self.index.image[self.negative_rows]
        for owner in np.unique(owners):
            rows = self.negative_rows[owners == owner]
            if len(rows) > self.max_negatives_per_image:
                rows = rng.choice(rows, self.max_negatives_per_image, replace=False)
            kept.append(rows)
        return np.sort(np.concatenate(kept)) if kept else self.negative_rows[:0]

    def negatives_per_epoch(self) -> int:
        """How many negatives an epoch asks for: ``negative_ratio`` per positive, extra positives included (fewer
        are drawn when the pool runs short)."""
        return int(round((len(self.positive_rows) + self.extra_positives) * self.negative_ratio))

    def draw(self, epoch: int = 0) -> np.ndarray:
        """Row numbers (into the index) for one epoch, positives and negatives shuffled together."""
        rng = np.random.default_rng([self.seed, epoch if self.redraw_each_epoch else 0])
        pool = self._negative_pool(rng)
        count = min(self.negatives_per_epoch(), len(pool))
        negatives = rng.choice(pool, count, replace=False) if count else pool[:0]
        rows = np.concatenate([self.positive_rows, negatives])
        return rng.permutation(rows)

    def epoch_index(self, epoch: int = 0) -> PatchIndex:
        """The drawn patches for ``epoch`` as a `PatchIndex`."""
        return self.index.subset(self.draw(epoch))

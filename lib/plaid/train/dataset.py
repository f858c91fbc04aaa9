"""Label-preserving augmentation of one patch: flips and quarter turns (batches: `plaid.train.batches`)."""

from __future__ import annotations

import numpy as np


def apply_dihedral(patch: np.ndarray, left_right: bool, up_down: bool, turns: int) -> np.ndarray:
    """One patch flipped left-right and/or up-down, then turned by ``turns`` quarter turns: the per-patch
    reference of `plaid.train.batches.augment_batch`."""
    if left_right:
        patch = patch[:, ::-1]
    if up_down:
        patch = patch[::-1, :]
    return np.rot90(patch, int(turns))


def augment_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90-degree rotations: label-preserving for patch classification."""
    return apply_dihedral(patch, rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(0, 4)))

"""Training patches for torch: the patches a `PatchIndex` names, as tensors, with label-preserving augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from plaid.patches.prepared import PreparedImage
from plaid.patches.sampling import PatchIndex


class PatchDataset(Dataset):
    """Patches named by a `PatchIndex`, as (1, H, W) float tensors in [0, 1] with a float label.

    Each item is an O(1) view of its prepared image; augmentation draws from a generator seeded by
    (seed, row), so it is the same whatever the number of DataLoader workers.
    """

    def __init__(self, images: Sequence[PreparedImage], index: PatchIndex, augment: bool = False,
                 seed: int = 0) -> None:
        self.images = images
        self.index = index
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[int(self.index.image[row])]
        patch = image.patches([int(self.index.patch[row])])[0]
        if self.augment:
            patch = augment_patch(patch, np.random.default_rng([self.seed, int(row)]))
        tensor = torch.from_numpy(np.ascontiguousarray(patch)).unsqueeze(0)
        return tensor, torch.tensor(float(self.index.label[row]))


def flip_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random left-right and up-down flips."""
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1, :]
    return patch


def augment_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90-degree rotations: label-preserving for patch classification."""
    return np.rot90(flip_patch(patch, rng), int(rng.integers(0, 4)))

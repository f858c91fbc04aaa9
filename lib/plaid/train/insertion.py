"""Calcification insertion: synthetic clusters (`plaid.synth.specks`) pasted into real normal tissue patches.

Patches arrive in [0, 1]; specks are drawn in the 12-bit display units `plaid.synth.generator` works in, so the
same rules apply as in the synthetic mammograms: speck diameters of 0.1-1 mm converted with the image's
pixel spacing, and a contrast that is raised where needed until even the dimmest speck pixel stands out
from the surrounding tissue (dense tissue gets brighter specks than fat).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from plaid.patches.prepared import PreparedImage
from plaid.patches.sampling import PatchIndex
from plaid.synth.specks import draw_speck, speck_diameter_px
from plaid.train.dataset import augment_patch

DISPLAY_MAX = 4095.0
SPECKS = (3, 10)
CLUSTER_SPREAD_MM = (1.0, 4.0)
DEFAULT_SPACING_MM = 0.1
INSERTED_CONTRAST = (250.0, 600.0)  # display units of 4095: fainter than plaid.synth.generator's own specks, as on film


def insert_cluster(patch: np.ndarray, spacing_mm: float, rng: np.random.Generator,
                   specks: tuple[int, int] = SPECKS,
                   contrast: tuple[float, float] = INSERTED_CONTRAST) -> tuple[np.ndarray, np.ndarray]:
    """A copy of a [0, 1] tissue patch with one cluster of specks inside it, and the specks' mask."""
    size = patch.shape
    pixels = patch.astype(np.float32) * np.float32(DISPLAY_MAX)
    mask = np.zeros(size, dtype=bool)
    spread = rng.uniform(*CLUSTER_SPREAD_MM) / spacing_mm
    spread = min(spread, 0.3 * min(size))
    margin = spread + 3.0
    centre = (rng.uniform(margin, size[0] - margin), rng.uniform(margin, size[1] - margin))
    placed: list[tuple[float, float, float]] = []
    wanted = int(rng.integers(specks[0], specks[1] + 1))
    for _ in range(wanted * 30):
        if len(placed) == wanted:
            break
        radial, turn = spread * math.sqrt(rng.uniform()), rng.uniform(0.0, 2 * math.pi)
        row, col = centre[0] + radial * math.sin(turn), centre[1] + radial * math.cos(turn)
        diameter = speck_diameter_px(spacing_mm, rng)
        if any(math.hypot(row - r, col - c) < 0.6 * (diameter + d) + 1.5 for r, c, d in placed):
            continue
        placed.append((row, col, diameter))
    for row, col, diameter in placed:
        draw_speck(pixels, mask, (row, col), diameter, rng.uniform(*contrast), rng)
    return np.clip(pixels / np.float32(DISPLAY_MAX), 0.0, 1.0), mask


class InsertedPositives(Dataset):
    """``count`` positives per epoch: random normal tissue patches of the training images with an inserted
    cluster, augmented like the real ones. ``rows`` are (image number, patch number) pairs to draw from."""

    def __init__(self, images: Sequence[PreparedImage], rows: np.ndarray, count: int, seed: int,
                 augment: bool = True) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        self.count = int(count) if len(self.rows) else 0
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, item])
        image_number, patch_number = self.rows[int(rng.integers(len(self.rows)))]
        image = self.images[int(image_number)]
        patch, _ = insert_cluster(image.patches([int(patch_number)])[0], image.spacing_mm_tiled or DEFAULT_SPACING_MM,
                                  rng)
        if self.augment:
            patch = augment_patch(patch, rng)
        return torch.from_numpy(np.ascontiguousarray(patch)).unsqueeze(0), torch.tensor(1.0)


def normal_rows(index: PatchIndex) -> np.ndarray:
    """(image number, patch number) of every negative patch of a candidate table: where clusters may go."""
    negatives = index.label == 0
    return np.stack([index.image[negatives], index.patch[negatives]], axis=1)

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

from plaid.patches.prepared import PreparedImage
from plaid.patches.sampling import PatchIndex
from plaid.synth.specks import (
    SpeckDraws,
    draw_speck,
    draw_speck_shapes,
    paste_specks,
    speck_diameter_px,
    speck_diameters_px,
)

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


def draw_clusters(count: int, size: int, spacing_mm: np.ndarray, rng: np.random.Generator,
                  specks: tuple[int, int] = SPECKS, contrast: tuple[float, float] = INSERTED_CONTRAST) -> SpeckDraws:
    """The specks of ``count`` clusters, one per ``size``-pixel square patch, placed by `insert_cluster`'s rules
    (a centre and spread per cluster, 3-10 specks inside it, no two specks touching), all clusters at once:
    each round offers every unfinished cluster one candidate speck."""
    spacing_mm = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (count,))
    spread = np.minimum(rng.uniform(*CLUSTER_SPREAD_MM, count) / spacing_mm, 0.3 * size)
    margin = spread + 3.0
    centre_row, centre_col = rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)
    wanted = rng.integers(specks[0], specks[1] + 1, count)
    rows = np.full((count, specks[1]), np.nan)
    cols, diameters = rows.copy(), rows.copy()
    placed = np.zeros(count, dtype=np.int64)
    clusters = np.arange(count)
    for _ in range(specks[1] * 30):
        open_ = clusters[placed < wanted]
        if not len(open_):
            break
        radial = spread[open_] * np.sqrt(rng.uniform(size=len(open_)))
        turn = rng.uniform(0.0, 2 * math.pi, len(open_))
        row, col = centre_row[open_] + radial * np.sin(turn), centre_col[open_] + radial * np.cos(turn)
        diameter = speck_diameters_px(spacing_mm[open_], rng)
        gap = np.hypot(row[:, None] - rows[open_], col[:, None] - cols[open_])
        clash = (gap < 0.6 * (diameter[:, None] + diameters[open_]) + 1.5).any(axis=1)  # NaN: no speck yet
        fits = open_[~clash]
        slot = placed[fits]
        rows[fits, slot], cols[fits, slot], diameters[fits, slot] = row[~clash], col[~clash], diameter[~clash]
        placed[fits] += 1
    patch, slot = np.nonzero(~np.isnan(rows))
    return draw_speck_shapes(patch, rows[patch, slot], cols[patch, slot], diameters[patch, slot],
                             rng.uniform(*contrast, len(patch)), rng)


def paste_clusters(patches: torch.Tensor, spacing_mm: np.ndarray, rng: np.random.Generator,
                   specks: tuple[int, int] = SPECKS,
                   contrast: tuple[float, float] = INSERTED_CONTRAST) -> tuple[torch.Tensor, torch.Tensor]:
    """One cluster pasted into each of the (N, H, W) [0, 1] square tissue patches (any device), drawn with each
    patch's pixel spacing: the batch form of `insert_cluster`. Returns the patches and the specks' masks."""
    draws = draw_clusters(len(patches), patches.shape[-1], spacing_mm, rng, specks, contrast)
    pixels, masks = paste_specks(patches * DISPLAY_MAX, draws)
    return torch.clamp(pixels / DISPLAY_MAX, 0.0, 1.0), masks


class InsertedPositives:
    """``count`` positives per epoch: random normal tissue patches of the training images with an inserted
    cluster (`plaid.train.batches` pastes and augments them with the real patches). ``rows`` are (image number,
    patch number) pairs to draw from."""

    def __init__(self, images: Sequence[PreparedImage], rows: np.ndarray, count: int, seed: int) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        self.count = int(count) if len(self.rows) else 0
        self.seed = seed

    def __len__(self) -> int:
        return self.count

    def draw(self, item: int) -> tuple[np.random.Generator, int, int]:
        """Item ``item``'s generator (seeded by (seed, item)) and the (image number, patch number) it drew."""
        rng = np.random.default_rng([self.seed, item])
        image_number, patch_number = self.rows[int(rng.integers(len(self.rows)))]
        return rng, int(image_number), int(patch_number)


def clustered_patch(image: PreparedImage, patch_number: int, rng: np.random.Generator) -> np.ndarray:
    """Grid patch ``patch_number`` of ``image`` in [0, 1] with a cluster inserted at the image's tiled spacing."""
    patch, _ = insert_cluster(image.patches([patch_number])[0], image.spacing_mm_tiled or DEFAULT_SPACING_MM, rng)
    return patch


def normal_rows(index: PatchIndex) -> np.ndarray:
    """(image number, patch number) of every negative patch of a candidate table: where clusters may go."""
    negatives = index.label == 0
    return np.stack([index.image[negatives], index.patch[negatives]], axis=1)

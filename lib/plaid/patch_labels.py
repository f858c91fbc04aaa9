"""Patch labels from annotations: a patch is 'calcification' when it overlaps an annotated region."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from plaid.errors import LabelShapeError
from plaid.tiling import PatchGrid, patch_fraction


def check_mask_shape(mask: np.ndarray, image_shape: tuple[int, int], path: str | Path | None = None) -> np.ndarray:
    """Return ``mask`` as a 2-D array, raising `LabelShapeError` if it does not match ``image_shape``."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and 1 in mask.shape:
        mask = mask.reshape([s for s in mask.shape if s != 1] or [1])
    if mask.ndim != 2 or tuple(mask.shape) != tuple(image_shape):
        raise LabelShapeError(
            f"annotation of shape {tuple(mask.shape)} does not match image of shape {tuple(image_shape)}", path
        )
    return mask


def patch_labels_from_mask(
    mask: np.ndarray, grid: PatchGrid, min_overlap: float = 0.0, path: str | Path | None = None
) -> np.ndarray:
    """Label every grid patch from a full-size mask (non-zero = calcification).

    A patch is positive when the annotated fraction of its in-image area is above ``min_overlap``;
    the default 0 means any overlap at all. A region across several patches marks each of them.
    """
    mask = check_mask_shape(mask, (grid.height, grid.width), path)
    if not 0.0 <= min_overlap < 1.0:
        raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap}")
    return patch_fraction(mask, grid) > min_overlap


def rasterise_boxes(
    shape: tuple[int, int], boxes: Iterable[Sequence[float]]
) -> np.ndarray:
    """A mask with every (top, left, bottom, right) box filled (bottom/right exclusive, clipped)."""
    mask = np.zeros(shape, dtype=np.uint8)
    for top, left, bottom, right in boxes:
        t, l_ = max(0, int(np.floor(top))), max(0, int(np.floor(left)))
        b, r = min(shape[0], int(np.ceil(bottom))), min(shape[1], int(np.ceil(right)))
        if b > t and r > l_:
            mask[t:b, l_:r] = 1
    return mask


def rasterise_points(
    shape: tuple[int, int], points: Iterable[Sequence[float]]
) -> np.ndarray:
    """A mask with a filled disc for every (row, col, radius) point; radius 0 marks one pixel."""
    mask = np.zeros(shape, dtype=np.uint8)
    for row, col, radius in points:
        radius = max(0.0, float(radius))
        top, bottom = max(0, int(np.floor(row - radius))), min(shape[0], int(np.floor(row + radius)) + 1)
        left, right = max(0, int(np.floor(col - radius))), min(shape[1], int(np.floor(col + radius)) + 1)
        if bottom <= top or right <= left:
            continue
        rr, cc = np.ogrid[top:bottom, left:right]
        disc = (rr - row) ** 2 + (cc - col) ** 2 <= max(radius, 0.5) ** 2
        mask[top:bottom, left:right] |= disc.astype(np.uint8)
    return mask

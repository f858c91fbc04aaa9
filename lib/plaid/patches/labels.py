"""Patch labels from annotations: a patch is 'calcification' when it overlaps an annotated region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plaid.io.labels import check_mask_shape
from plaid.patches.grid import PatchGrid, patch_fraction


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

"""Patch labels from masks, boxes and points, with the overlap rule."""

from __future__ import annotations

import numpy as np
import pytest

from plaid.errors import LabelShapeError
from plaid.patches.grid import PatchGrid
from plaid.patches.labels import patch_labels_from_mask


def test_hand_computed_example_with_region_spanning_four_patches() -> None:
    grid = PatchGrid(672, 672)  # 3x3 patches, indices row-major 0..8
    mask = np.zeros((672, 672), dtype=np.uint8)
    mask[5, 5] = 1                    # a single pixel in patch 0
    mask[210:240, 300:320] = 1        # region across the row boundary at 224: patches 1 and 4
    mask[430:460, 430:460] = 1        # region across the corner at (448, 448): patches 4, 5, 7, 8
    labels = patch_labels_from_mask(mask, grid)
    expected = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1], dtype=bool)
    np.testing.assert_array_equal(labels, expected)


def test_min_overlap_fraction() -> None:
    grid = PatchGrid(448, 448)
    mask = np.zeros((448, 448), dtype=np.uint8)
    mask[:10, :10] = 1                # 100 px of patch 0 (fraction 0.002)
    mask[224:324, 224:324] = 1        # 10000 px of patch 3 (fraction 0.199)
    np.testing.assert_array_equal(patch_labels_from_mask(mask, grid), [1, 0, 0, 1])
    np.testing.assert_array_equal(patch_labels_from_mask(mask, grid, min_overlap=0.1), [0, 0, 0, 1])


def test_wrong_mask_shape_names_file() -> None:
    with pytest.raises(LabelShapeError, match="mask_a.png"):
        patch_labels_from_mask(np.zeros((100, 100)), PatchGrid(448, 448), path="mask_a.png")

"""Patch grid, extraction and stitching at the image's exact shape."""

from __future__ import annotations

import numpy as np
import pytest

from plaid.patches.grid import PatchGrid, extract_patches, grid_for, patch_fraction, stitch


@pytest.mark.parametrize(("height", "width"), [(448, 672), (450, 700), (224, 224), (225, 223 + 224)])
def test_stitch_gives_back_exact_shape(height: int, width: int, rng: np.random.Generator) -> None:
    image = rng.random((height, width)).astype(np.float32)
    grid = grid_for(image)
    rows, cols = grid.shape
    assert rows == -(-height // 224) and cols == -(-width // 224)
    values = np.arange(len(grid), dtype=np.float32)
    painted = stitch(values, grid)
    assert painted.shape == (height, width)
    assert painted[0, 0] == 0 and painted[-1, -1] == len(grid) - 1
    assert painted[223, 223] == 0 and painted[224 % height, 0] == (cols if height > 224 else 0)


def test_extract_pads_edges_and_matches_pixels(rng: np.random.Generator) -> None:
    image = rng.random((300, 500)).astype(np.float32)
    grid = grid_for(image)
    patches = extract_patches(image, grid)
    assert patches.shape == (len(grid), 224, 224) == (2 * 3, 224, 224)
    np.testing.assert_array_equal(patches[0], image[:224, :224])
    last = patches[-1]  # bottom-right: rows 224..299, cols 448..499 then zero padding
    np.testing.assert_array_equal(last[:76, :52], image[224:, 448:])
    assert np.all(last[76:, :] == 0) and np.all(last[:, 52:] == 0)


def test_every_pixel_belongs_to_exactly_one_patch_without_overlap() -> None:
    grid = PatchGrid(500, 470)
    coverage = np.zeros((500, 470), dtype=int)
    for top, left, bottom, right in grid.boxes():
        coverage[top:bottom, left:right] += 1
    assert np.all(coverage == 1)


def test_overlapping_stride_covers_image_and_stitches_max() -> None:
    grid = PatchGrid(448, 448, patch_size=224, stride=112)
    assert grid.shape == (3, 3)
    values = np.zeros(len(grid))
    values[4] = 0.9  # centre patch spans rows/cols 112..335
    painted = stitch(values, grid)
    assert painted.shape == (448, 448)
    assert painted[200, 200] == pytest.approx(0.9) and painted[50, 50] == 0
    image = np.arange(448 * 448, dtype=np.float32).reshape(448, 448)
    np.testing.assert_array_equal(extract_patches(image, grid, [4])[0], image[112:336, 112:336])


def test_patch_fraction_counts_in_image_area_only() -> None:
    mask = np.zeros((300, 300), dtype=np.uint8)
    mask[250:260, 250:260] = 1  # 100 pixels in the 76x76 corner patch
    fractions = patch_fraction(mask, PatchGrid(300, 300))
    assert fractions[3] == pytest.approx(100 / (76 * 76))
    assert fractions[:3].sum() == 0


def test_invalid_grids_are_rejected() -> None:
    with pytest.raises(ValueError):
        PatchGrid(100, 100, patch_size=224, stride=300)
    with pytest.raises(ValueError):
        PatchGrid(0, 100)


@pytest.mark.parametrize("stride", [None, 112, 100])
def test_patch_fraction_matches_counting_each_box(stride: int | None, rng: np.random.Generator) -> None:
    mask = rng.random((513, 470)) > 0.7
    grid = PatchGrid(513, 470, 224, stride)
    expected = [mask[top:bottom, left:right].mean() for top, left, bottom, right in grid.boxes()]
    np.testing.assert_array_equal(patch_fraction(mask, grid), expected)

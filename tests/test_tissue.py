"""Tissue mask: the breast, not burned-in labels or bright film borders; and per-patch tissue flags."""

from __future__ import annotations

import numpy as np
import pytest

from plaid.patches.grid import PatchGrid
from plaid.patches.tissue import tissue_mask, tissue_patches, upsample_nearest
from plaid.synth.generator import synthesize_case


def test_breast_found_despite_burned_in_label_and_bright_border() -> None:
    case = synthesize_case(1000, 820, seed=4, view="CC", laterality="R", n_clusters=0)
    pixels = case.pixels.astype(np.float32)
    pixels[900:960, 650:790] = 4095.0  # burned-in laterality marker, away from the breast
    pixels[:8, :] = pixels[-8:, :] = 4095.0  # bright film border on every side
    pixels[:, :8] = pixels[:, -8:] = 4095.0
    mask = tissue_mask(pixels)
    assert mask.shape == pixels.shape
    assert not mask[900:960, 650:790].any()
    assert not mask[:8, 400:].any() and not mask[:, -8:].any()
    breast = case.breast_mask
    inner = breast.copy()
    inner[:30, :] = inner[-30:, :] = False
    inner[:, :30] = False
    agreement = (mask & inner).sum() / inner.sum()
    assert agreement > 0.95
    assert (mask & ~breast).sum() < 0.05 * breast.sum()


def test_blank_image_has_no_tissue_and_patches_follow_the_mask() -> None:
    assert not tissue_mask(np.zeros((300, 300), dtype=np.float32)).any()
    mask = np.zeros((448, 672), dtype=bool)
    mask[:, :250] = True
    np.testing.assert_array_equal(tissue_patches(mask, PatchGrid(448, 672)), [1, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(tissue_patches(mask, PatchGrid(448, 672), min_fraction=0.2), [1, 0, 0, 1, 0, 0])


@pytest.mark.parametrize(("height", "width"), [(4096, 3328), (513, 227)])
def test_upsampling_gives_skimage_nearest_neighbour_pixels(height: int, width: int) -> None:
    from skimage.transform import resize

    small = np.random.default_rng(0).random((512, 416)) > 0.5
    expected = resize(small.astype(np.float32), (height, width), order=0, anti_aliasing=False) > 0.5
    np.testing.assert_array_equal(upsample_nearest(small, (height, width)), expected)

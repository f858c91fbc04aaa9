"""Tissue mask: the breast, not burned-in labels or bright film borders; and per-patch tissue flags."""

from __future__ import annotations

import numpy as np
import pytest

from plaid.patches.grid import PatchGrid
from plaid.patches.tissue import tissue_mask, tissue_patches, upsample_nearest
from plaid.synth.generator import synthesize_case


def test_breast_found_despite_burned_in_label_and_bright_border() -> None:
    # a left breast: its chest wall on the left, so the marker and the right-hand border lie outside it
    case = synthesize_case(1000, 820, seed=4, view="CC", laterality="L", n_clusters=0)
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


def _former_tissue_mask(pixels: np.ndarray) -> np.ndarray:
    """The mask as computed before the sparse downsampling: skimage's resize of the full float image."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.transform import resize

    from plaid.patches.tissue import analysis_shape

    small_shape = analysis_shape(pixels.shape)
    small = resize(pixels.astype(np.float32), small_shape, order=1, anti_aliasing=True, preserve_range=True)
    smooth = ndimage.gaussian_filter(small, sigma=2.0)
    bright = smooth > threshold_otsu(smooth)
    margin = max(1, int(round(0.02 * max(small_shape))))
    inner = bright.copy()
    inner[:margin, :] = inner[-margin:, :] = False
    inner[:, :margin] = inner[:, -margin:] = False
    components, count = ndimage.label(inner)
    sizes = ndimage.sum_labels(inner, components, index=np.arange(1, count + 1))
    breast = ndimage.binary_fill_holes(components == (int(np.argmax(sizes)) + 1))
    breast = ndimage.binary_dilation(breast, iterations=margin + 1, mask=bright) | breast
    return resize(ndimage.binary_closing(breast, iterations=2).astype(np.float32), pixels.shape, order=0,
                  anti_aliasing=False) > 0.5


@pytest.mark.parametrize(("height", "width", "stride"), [(1000, 820, None), (700, 1300, 112)])
def test_fast_tissue_flags_equal_the_former_full_size_computation(height: int, width: int,
                                                                  stride: int | None) -> None:
    from skimage.transform import resize

    from plaid.patches.prepared import PatchSettings, prepare
    from plaid.patches.tissue import analysis_shape, breast_mask_small, downsample

    pixels = synthesize_case(height, width, seed=7, view="MLO", laterality="L", n_clusters=0).pixels
    as_integers = pixels.astype(np.uint16)
    small_shape = analysis_shape(pixels.shape)
    reference = resize(as_integers.astype(np.float32), small_shape, order=1, anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(downsample(as_integers, small_shape), reference, rtol=1e-5, atol=1e-3)
    former = _former_tissue_mask(as_integers)
    np.testing.assert_array_equal(tissue_mask(as_integers), former)
    grid = PatchGrid(height, width, stride=stride)
    np.testing.assert_array_equal(prepare(as_integers, PatchSettings(stride=stride)).tissue,
                                  tissue_patches(former, grid))
    np.testing.assert_array_equal(prepare(pixels.astype(np.float32), PatchSettings(stride=stride)).tissue,
                                  tissue_patches(former, grid))
    assert breast_mask_small(as_integers).shape == small_shape

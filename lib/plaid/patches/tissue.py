"""Breast-tissue mask: separates the breast from the dark background so background patches can be skipped."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.transform import resize

from plaid.patches.grid import PatchGrid, patch_fraction

ANALYSIS_SIZE = 512


def tissue_mask(pixels: np.ndarray, analysis_size: int = ANALYSIS_SIZE, border_fraction: float = 0.02) -> np.ndarray:
    """Boolean mask of the breast at full resolution.

    The image is analysed at a reduced size (this mask only decides which patches to score; patches
    themselves are never downsampled). Steps: Otsu threshold; a thin frame along the image border is
    cleared so bright film borders cannot join the breast; the largest remaining bright component is
    kept (burned-in labels and markers are smaller and drop out); holes are filled; the component then
    regrows into the border frame by as many pixels as were cleared, so tissue at the chest wall stays.
    """
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    height, width = pixels.shape
    scale = min(1.0, analysis_size / max(height, width))
    small_shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = resize(pixels.astype(np.float32, copy=False), small_shape, order=1, anti_aliasing=True, preserve_range=True)
    if float(small.max()) <= float(small.min()):
        return np.zeros(pixels.shape, dtype=bool)
    smooth = ndimage.gaussian_filter(small, sigma=2.0)
    bright = smooth > threshold_otsu(smooth)
    margin = max(1, int(round(border_fraction * max(small_shape))))
    inner = bright.copy()
    inner[:margin, :] = inner[-margin:, :] = False
    inner[:, :margin] = inner[:, -margin:] = False
    components, count = ndimage.label(inner)
    if count == 0:
        return np.zeros(pixels.shape, dtype=bool)
    sizes = ndimage.sum_labels(inner, components, index=np.arange(1, count + 1))
    breast = components == (int(np.argmax(sizes)) + 1)
    breast = ndimage.binary_fill_holes(breast)
    breast = ndimage.binary_dilation(breast, iterations=margin + 1, mask=bright) | breast
    breast = ndimage.binary_closing(breast, iterations=2)
    return upsample_nearest(breast, (height, width))


def upsample_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask enlarged to ``shape`` by nearest neighbour, pixel for pixel as skimage's
    ``resize(order=0)`` does it (ndimage.zoom in grid mode, mirrored edges), but on uint8 rather than
    float32: a quarter of the memory traffic on a full-size mammogram."""
    zoom = (shape[0] / mask.shape[0], shape[1] / mask.shape[1])
    return ndimage.zoom(mask.astype(np.uint8), zoom, order=0, mode="mirror", grid_mode=True) != 0


def tissue_patches(mask: np.ndarray, grid: PatchGrid, min_fraction: float = 0.0) -> np.ndarray:
    """Boolean per patch: True when more than ``min_fraction`` of the patch is tissue."""
    return patch_fraction(mask, grid) > min_fraction

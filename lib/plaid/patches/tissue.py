"""Breast-tissue mask: separates the breast from the dark background so background patches can be skipped.

The mask is computed on a small copy of the image (at most `ANALYSIS_SIZE` pixels a side). That copy is what
skimage's anti-aliased linear ``resize`` gives, computed as two sparse matrix products (one per axis) straight
from the file's integers, so a full-size float copy and a full-size Gaussian filter are never made. Patch
flags are counted from the small mask as the full-size nearest-neighbour mask would give them, without
building that mask either.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage, sparse
from skimage.filters import threshold_otsu
from skimage.transform import resize

from plaid.patches.grid import PatchGrid, patch_fraction

ANALYSIS_SIZE = 512


def analysis_shape(shape: tuple[int, int], analysis_size: int = ANALYSIS_SIZE) -> tuple[int, int]:
    """The size the tissue mask is computed at: the image scaled so its longer side is at most ``analysis_size``."""
    height, width = shape
    scale = min(1.0, analysis_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@lru_cache(maxsize=16)
def _axis_resize_matrix(length: int, small: int) -> sparse.csr_matrix:
    """(small, length) matrix of skimage's anti-aliased linear resize along one axis (Gaussian, then linear
    interpolation, mirrored edges).

    It is read off ``resize`` itself: probe columns hold unit impulses ``period`` pixels apart, far enough
    that each output pixel sees at most one impulse of a column, so every response is one matrix entry.
    """
    factor = length / small
    sigma = max(0.0, (factor - 1.0) / 2.0)
    reach = int(4.0 * sigma + 0.5) + int(math.ceil(factor)) + 3  # Gaussian radius + interpolation + mirror
    period = min(length, 2 * reach + 3)
    probes = np.zeros((length, period), dtype=np.float64)
    probes[np.arange(length), np.arange(length) % period] = 1.0
    responses = resize(probes, (small, period), order=1, anti_aliasing=factor > 1, preserve_range=True)
    centres = (np.arange(small) + 0.5) * factor - 0.5
    lowest = np.maximum(0, np.floor(centres).astype(np.int64) - reach)
    classes = np.arange(period)
    # the one input index of each impulse class at or after the lowest input an output pixel can see
    inputs = lowest[:, None] + (classes[None, :] - lowest[:, None]) % period
    keep = (inputs < length) & (responses != 0)
    rows = np.broadcast_to(np.arange(small)[:, None], inputs.shape)
    matrix = sparse.csr_matrix((responses[keep].astype(np.float32), (rows[keep], inputs[keep])),
                               shape=(small, length))
    return matrix


def downsample(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``pixels`` shrunk to ``shape`` as ``skimage.transform.resize(..., order=1, anti_aliasing=True,
    preserve_range=True)`` does it (to float32 rounding), in two sparse products; integer input is read as is."""
    rows = _axis_resize_matrix(pixels.shape[0], shape[0])
    cols = _axis_resize_matrix(pixels.shape[1], shape[1])
    source = pixels if pixels.dtype in (np.uint8, np.uint16, np.float32) else pixels.astype(np.float32)
    narrowed = np.asarray(rows @ source, dtype=np.float32)
    return np.asarray((cols @ narrowed.T).T, dtype=np.float32)


def breast_mask_small(pixels: np.ndarray, analysis_size: int = ANALYSIS_SIZE,
                      border_fraction: float = 0.02) -> np.ndarray:
    """The breast as a boolean mask of `analysis_shape` (see `tissue_mask` for the steps)."""
    if pixels.ndim != 2 or pixels.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    small_shape = analysis_shape(pixels.shape, analysis_size)
    small = downsample(pixels, small_shape)
    if float(small.max()) <= float(small.min()):
        return np.zeros(small_shape, dtype=bool)
    smooth = ndimage.gaussian_filter(small, sigma=2.0)
    bright = smooth > threshold_otsu(smooth)
    margin = max(1, int(round(border_fraction * max(small_shape))))
    inner = bright.copy()
    inner[:margin, :] = inner[-margin:, :] = False
    inner[:, :margin] = inner[:, -margin:] = False
    components, count = ndimage.label(inner)
    if count == 0:
        return np.zeros(small_shape, dtype=bool)
    sizes = ndimage.sum_labels(inner, components, index=np.arange(1, count + 1))
    breast = components == (int(np.argmax(sizes)) + 1)
    breast = ndimage.binary_fill_holes(breast)
    breast = ndimage.binary_dilation(breast, iterations=margin + 1, mask=bright) | breast
    return ndimage.binary_closing(breast, iterations=2)


def tissue_mask(pixels: np.ndarray, analysis_size: int = ANALYSIS_SIZE, border_fraction: float = 0.02) -> np.ndarray:
    """Boolean mask of the breast at full resolution.

    The image is analysed at a reduced size (this mask only decides which patches to score; patches
    themselves are never downsampled). Steps: Otsu threshold; a thin frame along the image border is
    cleared so bright film borders cannot join the breast; the largest remaining bright component is
    kept (burned-in labels and markers are smaller and drop out); holes are filled; the component then
    regrows into the border frame by as many pixels as were cleared, so tissue at the chest wall stays.
    """
    return upsample_nearest(breast_mask_small(pixels, analysis_size, border_fraction), pixels.shape)


def _nearest_sources(length: int, small: int) -> np.ndarray:
    """For each of ``length`` full-size positions, the small-mask position `upsample_nearest` copies."""
    return ndimage.zoom(np.arange(small, dtype=np.int64), length / small, order=0, mode="mirror", grid_mode=True)


def upsample_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask enlarged to ``shape`` by nearest neighbour, pixel for pixel as skimage's
    ``resize(order=0)`` does it (ndimage.zoom in grid mode, mirrored edges); nearest neighbour is separable,
    so it is one row and one column lookup."""
    rows = _nearest_sources(shape[0], mask.shape[0])
    cols = _nearest_sources(shape[1], mask.shape[1])
    return mask[rows[:, None], cols[None, :]]


def _coverage(starts: list[int], size: int, length: int, sources: np.ndarray, small: int) -> np.ndarray:
    """(patches along the axis, small) counts: how many full-size positions of each patch copy each small one."""
    counts = np.zeros((len(starts), small), dtype=np.int64)
    for number, start in enumerate(starts):
        counts[number] = np.bincount(sources[start : min(start + size, length)], minlength=small)
    return counts


def tissue_patches_from_small(mask: np.ndarray, grid: PatchGrid, min_fraction: float = 0.0) -> np.ndarray:
    """`tissue_patches` of the full-size nearest-neighbour enlargement of a small ``mask``, counted on the small
    mask: exactly the same flags, without the full-size mask."""
    row_cover = _coverage(grid.row_starts, grid.patch_size, grid.height,
                          _nearest_sources(grid.height, mask.shape[0]), mask.shape[0])
    col_cover = _coverage(grid.col_starts, grid.patch_size, grid.width,
                          _nearest_sources(grid.width, mask.shape[1]), mask.shape[1])
    counts = (row_cover @ mask.astype(np.int64) @ col_cover.T).ravel()
    areas = np.outer(row_cover.sum(axis=1), col_cover.sum(axis=1)).ravel()
    return counts / areas > min_fraction


def tissue_patches(mask: np.ndarray, grid: PatchGrid, min_fraction: float = 0.0) -> np.ndarray:
    """Boolean per patch: True when more than ``min_fraction`` of the patch is tissue."""
    return patch_fraction(mask, grid) > min_fraction

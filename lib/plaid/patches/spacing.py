"""Physical scale: which pixel spacing an image has, resampling it to a target spacing, and mapping back.

The spacing of an image comes from its DICOM header, else from the ``pixel_spacing_mm`` column of the
dataset's metadata, else from a configured fallback. With a target spacing the image (and its mask) is
resampled before tiling; results computed on the resampled grid map back onto the original pixel grid
with `to_original_grid`, which returns exactly the original shape.
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.transform import resize

logger = logging.getLogger(__name__)


def image_spacing(header_mm: float | None, metadata_mm: float | None, fallback_mm: float | None) -> float | None:
    """The spacing in mm to use: the header's, else the metadata's, else the fallback (None if none)."""
    for value in (header_mm, metadata_mm, fallback_mm):
        if value is not None and float(value) > 0:
            return float(value)
    return None


def target_shape(shape: tuple[int, int], spacing_mm: float | None, target_mm: float | None) -> tuple[int, int]:
    """The image size at ``target_mm`` (unchanged when either spacing is unknown or no target is set)."""
    if not target_mm or not spacing_mm:
        return int(shape[0]), int(shape[1])
    factor = float(spacing_mm) / float(target_mm)
    return max(1, int(round(shape[0] * factor))), max(1, int(round(shape[1] * factor)))


def resample_image(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels resampled to ``shape`` (linear; anti-aliased when shrinking); unchanged when already that size."""
    if tuple(pixels.shape) == tuple(shape):
        return pixels
    shrinking = shape[0] < pixels.shape[0] or shape[1] < pixels.shape[1]
    return resize(pixels.astype(np.float32), shape, order=1, anti_aliasing=shrinking,
                  preserve_range=True).astype(np.float32)


def _nearest_index(length: int, new_length: int) -> np.ndarray:
    """For each of ``new_length`` cells, the index of the old cell holding its centre."""
    return np.minimum(((np.arange(new_length) + 0.5) * length / new_length).astype(np.int64), length - 1)


def _cell_of(index: np.ndarray, length: int, new_length: int) -> np.ndarray:
    """The resampled cell holding the centre of original pixel ``index`` (the inverse of `to_original_grid`)."""
    return np.minimum(((index + 0.5) * new_length / length).astype(np.int64), new_length - 1)


def resample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask at ``shape`` where a cell is marked when any marked original pixel falls in it, or
    when its centre lies on a marked pixel: a one-pixel calcification survives shrinking."""
    mask = np.asarray(mask) != 0
    if tuple(mask.shape) == tuple(shape):
        return mask
    rows, cols = _nearest_index(mask.shape[0], shape[0]), _nearest_index(mask.shape[1], shape[1])
    out = mask[np.ix_(rows, cols)].copy()
    marked_rows, marked_cols = np.nonzero(mask)
    out[_cell_of(marked_rows, mask.shape[0], shape[0]), _cell_of(marked_cols, mask.shape[1], shape[1])] = True
    return out


def to_original_grid(values: np.ndarray, original_shape: tuple[int, int]) -> np.ndarray:
    """Map a per-pixel result computed on a resampled grid back to ``original_shape`` exactly: each original
    pixel takes the value of the resampled cell its centre falls in."""
    if tuple(values.shape) == tuple(original_shape):
        return values
    rows = _cell_of(np.arange(original_shape[0]), original_shape[0], values.shape[0])
    cols = _cell_of(np.arange(original_shape[1]), original_shape[1], values.shape[1])
    return values[np.ix_(rows, cols)]


def boxes_on_source(boxes: np.ndarray, working_shape: tuple[int, int], source_shape: tuple[int, int]) -> np.ndarray:
    """(N, 4) boxes (top, left, bottom, right) on a resampled grid, in the original image's pixels."""
    boxes = np.asarray(boxes)
    if tuple(working_shape) == tuple(source_shape):
        return boxes
    scale = np.array([source_shape[0] / working_shape[0], source_shape[1] / working_shape[1]] * 2)
    return np.rint(boxes.astype(np.float64) * scale).astype(np.int64)

"""Patch grid over a full-resolution image: patch positions, extraction, and stitching back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_PATCH_SIZE = 224


@dataclass(frozen=True)
class PatchGrid:
    """Patches of ``patch_size`` placed every ``stride`` pixels, from the top-left corner.

    With ``stride == patch_size`` (the default) the patches do not overlap; the last row and column
    reach past the bottom/right edge and are padded on extraction, so every pixel is covered.
    """

    height: int
    width: int
    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.patch_size <= 0:
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")
        if self.step <= 0 or self.step > self.patch_size:
            raise ValueError(f"stride must be in 1..patch_size ({self.patch_size}), got {self.stride}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @property
    def step(self) -> int:
        """Distance between neighbouring patch origins."""
        return self.patch_size if self.stride is None else int(self.stride)

    @staticmethod
    def _starts(length: int, size: int, step: int) -> list[int]:
        """Origins along one axis so that the patches cover ``length`` pixels."""
        starts = [0]
        while starts[-1] + size < length:
            starts.append(starts[-1] + step)
        return starts

    @property
    def row_starts(self) -> list[int]:
        """Top edge of every patch row."""
        return self._starts(self.height, self.patch_size, self.step)

    @property
    def col_starts(self) -> list[int]:
        """Left edge of every patch column."""
        return self._starts(self.width, self.patch_size, self.step)

    @property
    def shape(self) -> tuple[int, int]:
        """Number of patch rows and columns."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def origins(self) -> np.ndarray:
        """(N, 2) array of (top, left) for every patch, row-major."""
        rows, cols = np.meshgrid(self.row_starts, self.col_starts, indexing="ij")
        return np.stack([rows.ravel(), cols.ravel()], axis=1)

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of patch ``index`` clipped to the image (bottom/right exclusive)."""
        top, left = (int(v) for v in self.origins()[index])
        return top, left, min(top + self.patch_size, self.height), min(left + self.patch_size, self.width)

    def boxes(self) -> np.ndarray:
        """(N, 4) array of clipped (top, left, bottom, right) boxes, row-major."""
        origins = self.origins()
        bottoms = np.minimum(origins[:, 0] + self.patch_size, self.height)
        rights = np.minimum(origins[:, 1] + self.patch_size, self.width)
        return np.stack([origins[:, 0], origins[:, 1], bottoms, rights], axis=1)

    def padded_shape(self) -> tuple[int, int]:
        """Size of the image once padded so every patch lies inside it."""
        return self.row_starts[-1] + self.patch_size, self.col_starts[-1] + self.patch_size

    def block_view_ok(self) -> bool:
        """True when patches tile without overlap (each pixel belongs to one patch)."""
        return self.step == self.patch_size


def grid_for(image: np.ndarray, patch_size: int = DEFAULT_PATCH_SIZE, stride: int | None = None) -> PatchGrid:
    """The patch grid for a 2-D image."""
    return PatchGrid(int(image.shape[0]), int(image.shape[1]), patch_size, stride)


def pad_to_grid(image: np.ndarray, grid: PatchGrid, fill: float = 0.0) -> np.ndarray:
    """Pad the bottom/right edge of ``image`` with ``fill`` so the whole grid lies inside it."""
    padded_h, padded_w = grid.padded_shape()
    pad = ((0, padded_h - image.shape[0]), (0, padded_w - image.shape[1]))
    if pad == ((0, 0), (0, 0)):
        return image
    return np.pad(image, pad, mode="constant", constant_values=fill)


def patch_view(padded: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(rows, cols, patch, patch) view of an image already padded by `pad_to_grid`: no pixel is copied."""
    if padded.shape[:2] != grid.padded_shape():
        raise ValueError(f"padded image shape {padded.shape[:2]} does not match grid padding {grid.padded_shape()}")
    size, step = grid.patch_size, grid.step
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size))[::step, ::step]


def extract_patches(
    image: np.ndarray, grid: PatchGrid, indices: Sequence[int] | np.ndarray | None = None, fill: float = 0.0
) -> np.ndarray:
    """Return the (K, patch, patch) patches at ``indices`` (all when None), edge patches padded with ``fill``.

    This pads the whole image on every call; code that takes many patches from one image keeps a
    `plaid.patches.prepared.PreparedImage`, which pads once.
    """
    if image.shape[:2] != (grid.height, grid.width):
        raise ValueError(f"image shape {image.shape[:2]} does not match grid {grid.height}x{grid.width}")
    view = patch_view(pad_to_grid(image, grid, fill), grid)
    rows, cols = grid.shape
    indices = np.arange(len(grid)) if indices is None else np.asarray(indices, dtype=np.int64)
    return view[indices // cols, indices % cols]


def stitch(values: Sequence[float] | np.ndarray, grid: PatchGrid, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Paint one value per patch back into a map with the image's exact shape.

    Where patches overlap (stride smaller than the patch), each pixel takes the largest value.
    """
    values = np.asarray(values)
    if values.shape != (len(grid),):
        raise ValueError(f"expected {len(grid)} patch values, got shape {values.shape}")
    size = grid.patch_size
    if grid.block_view_ok():
        rows, cols = grid.shape
        tiled = np.repeat(np.repeat(values.reshape(rows, cols), size, axis=0), size, axis=1)
        return tiled[: grid.height, : grid.width].astype(dtype, copy=False)
    out = np.full((grid.height, grid.width), -np.inf, dtype=np.float64)
    for value, (top, left, bottom, right) in zip(values, grid.boxes(), strict=True):
        region = out[top:bottom, left:right]
        np.maximum(region, value, out=region)
    return out.astype(dtype)


def patch_fraction(mask: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Fraction of each patch's in-image area where ``mask`` is non-zero.

    Counts are exact integers: a block sum for non-overlapping grids, an int64 integral image otherwise.
    """
    if mask.shape != (grid.height, grid.width):
        raise ValueError(f"mask shape {mask.shape} does not match grid {grid.height}x{grid.width}")
    binary = np.asarray(mask) != 0
    boxes = grid.boxes()
    top, left, bottom, right = boxes.T
    areas = (bottom - top) * (right - left)
    if grid.block_view_ok():
        rows, cols = grid.shape
        size = grid.patch_size
        per_row = pad_to_grid(binary, grid, fill=False).reshape(rows, size, cols * size).sum(axis=1, dtype=np.int64)
        counts = per_row.reshape(rows, cols, size).sum(axis=2).ravel()
        return counts / areas
    integral = np.zeros((grid.height + 1, grid.width + 1), dtype=np.int64)
    np.cumsum(binary, axis=0, dtype=np.int64, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=1, out=integral[1:, 1:])
    counts = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    return counts / areas

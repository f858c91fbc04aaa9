"""One calcification speck: its size in pixels and its drawing, shared by the synthetic mammograms and by
calcification insertion into real tissue patches (`plaid.train.insertion`).

Pixels are in 12-bit display units; diameters are 0.1-1 mm converted with the image's pixel spacing.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

SPECK_DIAMETER_MM = (0.1, 1.0)
MAX_SPECK_DIAMETER_PX = 12.5
MAX_SPECK_CONTRAST = 1800.0
MIN_SPECK_EXCESS = 150.0


def sigmoid(values: np.ndarray) -> np.ndarray:
    """Logistic function, float32, safe for large magnitudes."""
    return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)


def draw_speck(
    pixels: np.ndarray,
    mask: np.ndarray,
    centre: tuple[float, float],
    diameter: float,
    amplitude: float,
    rng: np.random.Generator,
) -> float:
    """Add one irregular, soft-edged bright speck and mark its half-maximum footprint in ``mask``.

    Returns the speck's reach: no marked pixel is farther than this from ``centre``.
    """
    aspect = rng.uniform(1.0, 1.8)
    orientation = rng.uniform(0.0, np.pi)
    lobes, lobe_phase, lobe_depth = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.15)
    softness = rng.uniform(0.45, 0.8)
    half_major = 0.5 * diameter * math.sqrt(aspect)
    half_minor = 0.5 * diameter / math.sqrt(aspect)
    reach = math.ceil(half_major * (1.0 + lobe_depth) + 4.0 * softness + 2.0)
    row, col = centre
    top, left = max(0, int(row) - reach), max(0, int(col) - reach)
    bottom, right = min(pixels.shape[0], int(row) + reach + 1), min(pixels.shape[1], int(col) + reach + 1)
    d_row = np.arange(top, bottom, dtype=np.float32)[:, None] + np.float32(0.5 - row)
    d_col = np.arange(left, right, dtype=np.float32)[None, :] + np.float32(0.5 - col)
    cos_o, sin_o = math.cos(orientation), math.sin(orientation)
    along = d_col * cos_o + d_row * sin_o
    across = -d_col * sin_o + d_row * cos_o
    scaled = np.hypot(along / half_major, across / half_minor)
    theta = np.arctan2(across, along)
    scaled /= 1.0 + lobe_depth * np.cos(lobes * theta + lobe_phase)
    edge_distance = (scaled - 1.0) * np.float32(math.sqrt(half_major * half_minor))
    profile = sigmoid(-edge_distance / np.float32(softness))
    profile /= float(sigmoid(np.float32(math.sqrt(half_major * half_minor) / softness)))
    centre_pixel = (min(max(int(row), top), bottom - 1) - top, min(max(int(col), left), right - 1) - left)
    footprint = profile >= 0.5
    footprint[centre_pixel] = True
    pieces, _ = ndimage.label(footprint, structure=np.ones((3, 3), dtype=bool))
    footprint = pieces == pieces[centre_pixel]  # one 8-connected speck
    profile[centre_pixel] = max(float(profile[centre_pixel]), 0.6)
    # A speck over a fat lobule next to dense tissue must still stand out from its surroundings: raise
    # the contrast so that even its dimmest (half-maximum) pixel clears the local median.
    context = pixels[max(0, top - 16) : bottom + 16, max(0, left - 16) : right + 16]
    underneath = pixels[top:bottom, left:right][footprint]
    needed = 2.0 * (float(np.median(context)) + MIN_SPECK_EXCESS - float(underneath.min()))
    amplitude = min(max(amplitude, needed), MAX_SPECK_CONTRAST)
    pixels[top:bottom, left:right] += np.float32(amplitude) * profile
    mask[top:bottom, left:right] |= footprint
    marked_rows, marked_cols = np.nonzero(footprint)
    return float(np.hypot(marked_rows + top + 0.5 - row, marked_cols + left + 0.5 - col).max())


def speck_diameter_px(spacing_mm: float, rng: np.random.Generator) -> float:
    """A speck diameter in pixels, 0.1-1 mm and skewed toward small ones, capped for small spacings."""
    low, high = SPECK_DIAMETER_MM
    diameter_mm = low + (high - low) * rng.beta(1.4, 2.6)
    return float(np.clip(diameter_mm / spacing_mm, 1.0, MAX_SPECK_DIAMETER_PX))

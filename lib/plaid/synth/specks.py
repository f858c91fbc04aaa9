"""One calcification speck: its size in pixels and its drawing, shared by the synthetic mammograms and by
calcification insertion into real tissue patches (`plaid.train.insertion`).

Pixels are in 12-bit display units; diameters are 0.1-1 mm converted with the image's pixel spacing.
`paste_specks` draws the specks of a whole batch of patches at once (torch, on any device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
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


@dataclass(frozen=True)
class SpeckDraws:
    """The specks of a batch of clusters, one entry per speck: which patch it goes to, its centre (row, col in
    pixels), diameter (pixels), shape (aspect, orientation, lobes, lobe phase and depth, edge softness) and
    peak contrast (display units) before the visibility rule of `paste_specks`."""

    patch: np.ndarray
    row: np.ndarray
    col: np.ndarray
    diameter: np.ndarray
    aspect: np.ndarray
    orientation: np.ndarray
    lobes: np.ndarray
    lobe_phase: np.ndarray
    lobe_depth: np.ndarray
    softness: np.ndarray
    amplitude: np.ndarray

    def __len__(self) -> int:
        return len(self.patch)


def speck_diameters_px(spacing_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`speck_diameter_px` for many specks at once (one spacing per speck)."""
    low, high = SPECK_DIAMETER_MM
    diameter_mm = low + (high - low) * rng.beta(1.4, 2.6, size=len(spacing_mm))
    return np.clip(diameter_mm / spacing_mm, 1.0, MAX_SPECK_DIAMETER_PX)


def draw_speck_shapes(patch: np.ndarray, row: np.ndarray, col: np.ndarray, diameter: np.ndarray,
                      amplitude: np.ndarray, rng: np.random.Generator) -> SpeckDraws:
    """Random shapes (as `draw_speck` draws them) for specks already placed."""
    count = len(patch)
    return SpeckDraws(
        patch=patch, row=row, col=col, diameter=diameter, aspect=rng.uniform(1.0, 1.8, count),
        orientation=rng.uniform(0.0, np.pi, count), lobes=rng.integers(2, 5, count),
        lobe_phase=rng.uniform(0, 2 * np.pi, count), lobe_depth=rng.uniform(0.0, 0.15, count),
        softness=rng.uniform(0.45, 0.8, count), amplitude=amplitude,
    )


CONTEXT_PX = 16


def paste_specks(pixels: torch.Tensor, draws: SpeckDraws) -> tuple[torch.Tensor, torch.Tensor]:
    """Every speck of ``draws`` added to its patch of ``pixels`` ((N, H, W), display units), all at once on
    ``pixels``' device; returns the new pixels and the specks' half-maximum footprints ((N, H, W) bool).

    Each speck is `draw_speck`'s irregular soft-edged profile on a window around its centre; its contrast is
    raised (up to `MAX_SPECK_CONTRAST`) until its dimmest footprint pixel clears the median of the tissue
    around it by `MIN_SPECK_EXCESS`, that median (of every other pixel) and minimum read from the patch before
    any speck is added.
    """
    device = pixels.device
    count, height, width = pixels.shape
    masks = torch.zeros(pixels.shape, dtype=torch.bool, device=device)
    if not len(draws):
        return pixels.clone(), masks

    def column(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)[:, None, None]

    aspect = np.asarray(draws.aspect, dtype=np.float64)
    half_major = 0.5 * draws.diameter * np.sqrt(aspect)
    half_minor = 0.5 * draws.diameter / np.sqrt(aspect)
    reach = np.ceil(half_major * (1.0 + draws.lobe_depth) + 4.0 * draws.softness + 2.0).astype(np.int64)
    radius = int(reach.max())
    side = 2 * radius + 1
    top = draws.row.astype(np.int64) - radius
    left = draws.col.astype(np.int64) - radius
    offsets = torch.arange(side, device=device, dtype=torch.float32)
    d_row = (torch.as_tensor(top, device=device)[:, None].float() + offsets)[:, :, None] + 0.5 - column(draws.row)
    d_col = (torch.as_tensor(left, device=device)[:, None].float() + offsets)[:, None, :] + 0.5 - column(draws.col)
    cos_o, sin_o = column(np.cos(draws.orientation)), column(np.sin(draws.orientation))
    along = d_col * cos_o + d_row * sin_o
    across = -d_col * sin_o + d_row * cos_o
    scaled = torch.hypot(along / column(half_major), across / column(half_minor))
    theta = torch.atan2(across, along)
    scaled = scaled / (1.0 + column(draws.lobe_depth) * torch.cos(column(draws.lobes) * theta
                                                                   + column(draws.lobe_phase)))
    size = column(np.sqrt(half_major * half_minor))
    softness = column(draws.softness)
    profile = torch.sigmoid(-(scaled - 1.0) * size / softness) / torch.sigmoid(size / softness)
    footprint = profile >= 0.5
    centre_row = np.clip(draws.row.astype(np.int64) - top, 0, side - 1)
    centre_col = np.clip(draws.col.astype(np.int64) - left, 0, side - 1)
    specks = torch.arange(len(draws), device=device)
    at_centre = (specks, torch.as_tensor(centre_row, device=device), torch.as_tensor(centre_col, device=device))
    footprint[at_centre] = True
    profile[at_centre] = torch.clamp(profile[at_centre], min=0.6)

    # patch pixels under each window (NaN outside the patch), the window widened by CONTEXT_PX for the median
    margin = radius + CONTEXT_PX
    padded = torch.nn.functional.pad(pixels, (margin, margin, margin, margin), value=float("nan"))
    wide = 2 * margin + 1
    rows = torch.as_tensor(top - CONTEXT_PX + margin, device=device)[:, None] + torch.arange(wide, device=device)
    cols = torch.as_tensor(left - CONTEXT_PX + margin, device=device)[:, None] + torch.arange(wide, device=device)
    patch = torch.as_tensor(draws.patch, device=device)
    context = padded[patch[:, None, None], rows[:, :, None], cols[:, None, :]]
    underneath = context[:, CONTEXT_PX : CONTEXT_PX + side, CONTEXT_PX : CONTEXT_PX + side]
    inside = ~torch.isnan(underneath)
    footprint &= inside
    median = torch.nanmedian(context[:, ::2, ::2].flatten(1), dim=1).values  # every other pixel: a quarter the sort
    lowest = torch.where(footprint, underneath, torch.full_like(underneath, float("inf"))).flatten(1).amin(dim=1)
    needed = 2.0 * (median + MIN_SPECK_EXCESS - lowest)
    amplitude = torch.as_tensor(np.asarray(draws.amplitude, dtype=np.float32), device=device)
    amplitude = torch.clamp(torch.maximum(amplitude, torch.nan_to_num(needed, nan=0.0, neginf=0.0)),
                            max=MAX_SPECK_CONTRAST)

    # add the windows into a canvas padded by the window radius, then cut the patches back out
    canvas = torch.nn.functional.pad(pixels, (radius, radius, radius, radius))
    marks = torch.zeros(canvas.shape, dtype=torch.float32, device=device)
    full_height, full_width = canvas.shape[1:]
    win_rows = torch.as_tensor(top + radius, device=device)[:, None] + torch.arange(side, device=device)
    win_cols = torch.as_tensor(left + radius, device=device)[:, None] + torch.arange(side, device=device)
    flat = (patch[:, None, None] * (full_height * full_width) + win_rows[:, :, None] * full_width
            + win_cols[:, None, :]).flatten()
    canvas.view(-1).index_add_(0, flat, (amplitude[:, None, None] * profile * inside).flatten())
    marks.view(-1).index_add_(0, flat, footprint.float().flatten())
    window = (slice(None), slice(radius, radius + height), slice(radius, radius + width))
    return canvas[window].contiguous(), marks[window] > 0

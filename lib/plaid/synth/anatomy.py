"""The breast a synthetic mammogram is drawn on: noise fields and the working-resolution anatomy.

Outline, skin line, fat layer, fibroglandular clouds and strands, ligaments and the pectoral muscle of MLO
views are built at a working resolution of at most `WORKING_SIZE` pixels a side (they are smooth), chest
wall on the left, and upsampled once by `plaid.synth.generator.synthesize_case`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from plaid.synth.specks import sigmoid

WORKING_SIZE = 900
SKIN_MARGIN_MM = 8.0
MUSCLE_MARGIN_MM = 3.0


# ---------------------------------------------------------------------------------------------------
# Noise fields


def _filtered_noise(shape: tuple[int, int], rng: np.random.Generator, gain) -> np.ndarray:
    """White noise shaped in the Fourier domain by ``gain(squared radial frequency)``; zero mean, unit std."""
    height, width = shape
    spectrum = np.fft.rfft2(rng.standard_normal(shape, dtype=np.float32))
    freq_sq = np.fft.fftfreq(height).astype(np.float32)[:, None] ** 2 + np.fft.rfftfreq(width).astype(np.float32) ** 2
    spectrum *= gain(freq_sq)
    spectrum[0, 0] = 0.0
    field_ = np.fft.irfft2(spectrum, s=shape).astype(np.float32)
    return (field_ - field_.mean()) / (field_.std() + 1e-6)


def power_law_noise(
    shape: tuple[int, int], beta: float, rng: np.random.Generator, corner_px: float = 0.0
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise with a 1/f**beta power spectrum (float32).

    ``corner_px`` flattens the spectrum for wavelengths longer than that many pixels so a single
    huge blob cannot dominate the field. Mammographic background anatomy is close to beta = 3.
    """
    corner = 1.0 / corner_px if corner_px > 0 else 1.0 / max(shape)
    return _filtered_noise(shape, rng, lambda freq_sq: (freq_sq + np.float32(corner**2)) ** np.float32(-beta / 4.0))


def band_noise(shape: tuple[int, int], wavelength_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise whose features are about ``wavelength_px`` wide (difference of Gaussians)."""
    sigma = max(wavelength_px / 4.0, 0.5)
    narrow, wide = np.float32(-2.0 * np.pi**2 * sigma**2), np.float32(-2.0 * np.pi**2 * (2.0 * sigma) ** 2)
    return _filtered_noise(shape, rng, lambda freq_sq: np.exp(narrow * freq_sq) - np.exp(wide * freq_sq))


def _periodic_profile(rng: np.random.Generator, knots: int = 48, smooth: float = 3.0) -> np.ndarray:
    """Smooth, periodic random values (zero mean, unit std) on ``knots`` angles over a full turn."""
    values = ndimage.gaussian_filter1d(rng.standard_normal(knots), smooth, mode="wrap")
    return (values - values.mean()) / (values.std() + 1e-9)


def _sample_periodic(profile: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Linear interpolation of a periodic profile (see `_periodic_profile`) at angles in radians."""
    knots = len(profile)
    position = (np.asarray(angle, dtype=np.float32) + np.float32(np.pi)) * np.float32(knots / (2 * np.pi))
    return np.interp(position, np.arange(knots + 1), np.append(profile, profile[0]), period=knots).astype(
        np.float32
    )


def _smoothstep(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 below ``low``, 1 above ``high``, a smooth cubic in between."""
    t = np.clip((values - np.float32(low)) / np.float32(max(high - low, 1e-6)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ---------------------------------------------------------------------------------------------------
# Anatomy (chest wall on the left, working resolution)


@dataclass
class Anatomy:
    """Working-resolution fields of one breast, chest wall on the left."""

    intensity: np.ndarray  # display value before fine texture and noise
    radius: np.ndarray  # distance from the chest-wall centre over the outline radius (<1 inside)
    allowed: np.ndarray  # where calcifications may go (inside, away from skin, muscle, borders)
    muscle: np.ndarray  # pectoral muscle weight 0..1 (all zero on CC views)
    factor: int  # full-resolution pixels per working pixel


def _outline(view: str, height: int, width: int, rng: np.random.Generator) -> dict[str, float]:
    """Random breast outline parameters in working pixels: chest-wall centre row, semi-axes, tilt."""
    if view == "CC":
        return {
            "centre_row": height * rng.uniform(0.47, 0.53),
            "semi_rows": height * rng.uniform(0.37, 0.44),
            "semi_cols": width * rng.uniform(0.64, 0.80),
            "tilt": math.radians(rng.uniform(-6.0, 6.0)),
            "power": rng.uniform(2.0, 2.4),
        }
    return {
        "centre_row": height * rng.uniform(0.34, 0.40),
        "semi_rows": height * rng.uniform(0.47, 0.54),
        "semi_cols": width * rng.uniform(0.60, 0.74),
        "tilt": math.radians(rng.uniform(6.0, 15.0)),
        "power": rng.uniform(1.9, 2.2),
    }


def _outline_radius(angle: np.ndarray, shape: dict[str, float], wobble: np.ndarray) -> np.ndarray:
    """Distance from the chest-wall centre to the skin line along ``angle`` (a tilted superellipse)."""
    relative = angle - np.float32(shape["tilt"])
    power = shape["power"]
    inverse = (np.abs(np.cos(relative)) / shape["semi_cols"]) ** power + (
        np.abs(np.sin(relative)) / shape["semi_rows"]
    ) ** power
    return (inverse ** (-1.0 / power)) * (1.0 + 0.025 * _sample_periodic(wobble, angle))


def _polar_strands(
    rows: np.ndarray, cols: np.ndarray, nipple: tuple[float, float], reach: float, rng: np.random.Generator
) -> np.ndarray:
    """Noise stretched along rays through the nipple: ducts and strands that converge on it."""
    d_rows, d_cols = rows - np.float32(nipple[0]), cols - np.float32(nipple[1])
    angle = np.arctan2(-d_rows, -d_cols)  # the wrap-around seam points away from the breast
    log_distance = np.log1p(np.hypot(d_rows, d_cols) / np.float32(max(reach, 1.0) * 0.05))
    n_angle, n_dist = 720, 96
    grid = rng.standard_normal((n_angle, n_dist)).astype(np.float32)
    grid = ndimage.gaussian_filter(grid, sigma=(3.0, 6.0), mode=("wrap", "nearest"))
    grid = (grid - grid.mean()) / (grid.std() + 1e-6)
    top = float(np.log1p(20.0)) + 1e-3
    coords = np.stack(
        [(angle + np.float32(np.pi)) * np.float32(n_angle / (2 * np.pi)), log_distance * np.float32((n_dist - 1) / top)]
    )
    return ndimage.map_coordinates(grid, coords, order=1, mode="nearest").astype(np.float32)


def build_anatomy(
    height: int, width: int, view: str, spacing_mm: float, density: float, rng: np.random.Generator
) -> Anatomy:
    """Breast outline, thickness, tissue, skin and (MLO) pectoral muscle at working resolution."""
    factor = max(1, math.ceil(max(height, width) / WORKING_SIZE))
    h, w = math.ceil(height / factor), math.ceil(width / factor)
    mm = spacing_mm * factor  # millimetres per working pixel
    rows = np.arange(h, dtype=np.float32)[:, None] + np.float32(0.5)
    cols = np.arange(w, dtype=np.float32)[None, :] + np.float32(0.5)

    shape = _outline(view, h, w, rng)
    wobble = _periodic_profile(rng)
    d_rows, d_cols = rows - np.float32(shape["centre_row"]), np.broadcast_to(cols, (h, w))
    angle = np.arctan2(d_rows, d_cols).astype(np.float32)
    distance = np.hypot(d_rows, d_cols).astype(np.float32)
    outline = _outline_radius(angle, shape, wobble).astype(np.float32)
    radius = distance / outline
    breast = radius < 1.0
    skin_mm = (outline - distance) * np.float32(mm)  # depth below the skin line along the ray

    # Compressed breast: full thickness inside, a rounded edge over the outer ~1 cm.
    edge_mm = rng.uniform(9.0, 15.0)
    depth = np.clip(skin_mm / np.float32(edge_mm), 0.0, 1.0)
    thickness = np.sqrt(1.0 - (1.0 - depth) ** 2)

    # Pectoral muscle (MLO): top-left triangle with a slightly convex front edge.
    muscle = np.zeros((h, w), dtype=np.float32)
    muscle_front = np.full((h, w), -np.inf, dtype=np.float32)
    if view == "MLO":
        top_row_inside = np.flatnonzero(breast[0])
        top_extent = float(top_row_inside.max() + 1) if top_row_inside.size else w * 0.5
        muscle_cols = top_extent * rng.uniform(0.42, 0.68)
        muscle_rows = h * rng.uniform(0.34, 0.55)
        bulge = rng.uniform(0.1, 0.35)
        fraction = np.clip(rows / np.float32(muscle_rows), 0.0, 1.0)
        edge_col = np.float32(muscle_cols) * (1.0 - fraction) * (1.0 + np.float32(bulge) * fraction)
        edge_col = np.where(rows < muscle_rows, edge_col, np.float32(-1.0))
        muscle_front = (edge_col - cols) * np.float32(mm)  # mm inside the muscle (negative outside)
        muscle = sigmoid(muscle_front / np.float32(0.35)) * breast

    # Fibroglandular tissue: power-law clouds, small lobules and strands converging on the nipple,
    # inside an envelope that leaves a subcutaneous fat layer under the skin; ``density`` sets the
    # share of the envelope that is dense.
    nipple_angle = shape["tilt"]
    nipple_reach = float(_outline_radius(np.float32(nipple_angle), shape, wobble)) - 3.0 / mm
    nipple = (
        shape["centre_row"] + nipple_reach * math.sin(nipple_angle),
        nipple_reach * math.cos(nipple_angle),
    )
    clouds = power_law_noise((h, w), 3.0, rng, corner_px=35.0 / mm)
    strands = _polar_strands(rows, cols, nipple, nipple_reach, rng)
    lobules = band_noise((h, w), 4.0 / mm, rng)
    nipple_distance = np.hypot(rows - np.float32(nipple[0]), cols - np.float32(nipple[1]))
    strand_weight = 0.12 + 0.2 * np.exp(-nipple_distance / np.float32(0.6 * max(nipple_reach, 1.0)))
    texture = 0.85 * clouds + strand_weight * strands + 0.25 * lobules
    fat_layer = rng.uniform(4.0, 9.0)
    envelope = _smoothstep(skin_mm, fat_layer, fat_layer + 14.0)
    envelope *= np.clip(0.75 + 0.35 * power_law_noise((h, w), 4.0, rng, corner_px=60.0 / mm), 0.0, 1.0)
    envelope *= 1.0 - muscle
    region = envelope > 0.5
    threshold = float(np.quantile(texture[region], 1.0 - density)) if region.any() else 0.0
    gland = sigmoid((texture - np.float32(threshold)) / np.float32(0.5)) * envelope

    # Cooper's ligaments / trabeculae: thin curvilinear ridges in the fat.
    ridges = band_noise((h, w), 7.0 / mm, rng)
    ligaments = np.exp(-((ridges / np.float32(0.1)) ** 2)) * (1.0 - gland) * _smoothstep(skin_mm, 1.5, 6.0)
    ligaments *= _smoothstep(band_noise((h, w), 12.0 / mm, rng), 0.0, 0.8)  # arcs, not closed loops

    background = rng.uniform(25.0, 55.0)
    fat_level = rng.uniform(1250.0, 1450.0)
    gland_gain = rng.uniform(1150.0, 1500.0)
    tissue = np.float32(fat_level) + np.float32(gland_gain) * gland + np.float32(90.0) * ligaments
    tissue *= np.float32(0.33) + np.float32(0.67) * thickness
    tissue += np.float32(rng.uniform(120.0, 220.0)) * np.exp(-((skin_mm / np.float32(0.7)) ** 2))  # skin line
    if view == "MLO":
        muscle_level = rng.uniform(2450.0, 2800.0)
        depth_in_muscle = _smoothstep(muscle_front, 0.0, 20.0)
        stripes = ndimage.gaussian_filter1d(rng.standard_normal(512), 1.5)  # fibres parallel to the front
        stripes = (stripes - stripes.mean()) / (stripes.std() + 1e-9)
        fibres = np.interp(np.clip(muscle_front, 0.0, 255.0) * 2.0, np.arange(512), stripes).astype(np.float32)
        muscle_value = np.float32(muscle_level) * (1.0 - 0.15 * fraction) + 200.0 * depth_in_muscle
        muscle_value += 45.0 * fibres + 40.0 * band_noise((h, w), 6.0 / mm, rng)
        tissue = tissue * (1.0 - muscle) + np.maximum(muscle_value, tissue) * muscle
    intensity = np.where(breast, tissue, np.float32(background)).astype(np.float32)

    allowed = breast & (skin_mm >= np.float32(min(SKIN_MARGIN_MM, 0.2 * shape["semi_cols"] * mm)))
    allowed &= muscle_front <= -np.float32(MUSCLE_MARGIN_MM)
    border = max(1, math.ceil(2.0 / mm))
    allowed[:border, :] = allowed[-border:, :] = False
    allowed[:, :border] = allowed[:, -border:] = False
    return Anatomy(
        intensity=intensity, radius=radius.astype(np.float32), allowed=allowed, muscle=muscle, factor=factor
    )


def upsample(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel-centre aligned), cropped to ``shape``."""
    if factor == 1:
        return small[: shape[0], : shape[1]].astype(np.float32, copy=True)
    big = ndimage.zoom(small, factor, order=1, mode="nearest", grid_mode=True, output=np.float32)
    return big[: shape[0], : shape[1]]

"""Synthetic mammograms with microcalcification clusters, for sample data, tests and benchmarks.

The images will not fool a radiologist, but they carry the structure PLAID relies on:

* a breast-shaped region attached to the chest wall (right edge for a right breast, left edge for a
  left breast, as films are hung: `plaid.io.dicom.patient_orientation`) on a dark, noisy background;
* tissue that thins toward the skin line (a compressed breast is rounded at its edge), a thin skin
  line, a subcutaneous fat layer, and fibroglandular tissue made of power-law (1/f^3) clouds plus
  strands that converge on the nipple, with fine curvilinear ligaments in the fat;
* a bright triangular pectoral muscle with a slightly convex edge in the upper chest-wall corner of
  MLO views;
* clusters of 3-12 small (0.1-1 mm), blurred, bright specks inside the breast, away from the skin and
  the muscle, whose exact pixels are known (the ground-truth mask is the thresholded speck footprint).

Anatomy is built at a working resolution of at most ~900 pixels a side (it is smooth) and upsampled
once; fine texture, noise and the specks are added at full resolution, the specks on small local
windows, so a 4096x3328 image takes a few seconds. Everything is drawn from one seeded
``numpy.random.Generator``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from plaid.synth.specks import draw_speck, sigmoid, speck_diameter_px

logger = logging.getLogger(__name__)

MAX_VALUE = 4095
WORKING_SIZE = 900
VIEWS = ("CC", "MLO")
LATERALITIES = ("L", "R")
FORMATS = ("png", "dcm")
METADATA_COLUMNS = (
    "image_id",
    "file",
    "label",
    "patient_id",
    "age",
    "laterality",
    "view",
    "pixel_spacing_mm",
    "n_clusters",
    "n_specks",
)
SPECKS_PER_CLUSTER = (3, 12)
SPECK_CONTRAST = (500.0, 1200.0)
SKIN_MARGIN_MM = 8.0
MUSCLE_MARGIN_MM = 3.0


@dataclass
class SyntheticCase:
    """One generated mammogram and everything known about it.

    ``pixels`` are uint16 display values in 0..4095 (bright = dense); ``calcification_mask`` is uint8
    0/1 marking every speck pixel; ``breast_mask`` is the breast outline (muscle included) and
    ``pectoral_mask`` the pectoral muscle (empty on CC views), both bool. Each
    cluster is a dict with ``row``, ``col`` (centre, image coordinates), ``radius_px`` (every speck
    pixel of the cluster lies within it), ``n_specks`` and ``specks`` ([row, col, diameter_px] each).
    """

    pixels: np.ndarray
    calcification_mask: np.ndarray
    breast_mask: np.ndarray
    pectoral_mask: np.ndarray | None = None
    clusters: list[dict[str, Any]] = field(default_factory=list)
    view: str = "CC"
    laterality: str = "R"
    patient_id: str = "SYN0000"
    age: int = 55
    pixel_spacing_mm: float = 0.085

    @property
    def n_specks(self) -> int:
        """Total number of calcification specks."""
        return int(sum(cluster["n_specks"] for cluster in self.clusters))

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


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
class _Anatomy:
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


def _build_anatomy(
    height: int, width: int, view: str, spacing_mm: float, density: float, rng: np.random.Generator
) -> _Anatomy:
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
    return _Anatomy(
        intensity=intensity, radius=radius.astype(np.float32), allowed=allowed, muscle=muscle, factor=factor
    )


def _upsample(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel-centre aligned), cropped to ``shape``."""
    if factor == 1:
        return small[: shape[0], : shape[1]].astype(np.float32, copy=True)
    big = ndimage.zoom(small, factor, order=1, mode="nearest", grid_mode=True, output=np.float32)
    return big[: shape[0], : shape[1]]


# ---------------------------------------------------------------------------------------------------
# Calcifications (full resolution, chest wall on the left)


def _place_clusters(
    pixels: np.ndarray,
    anatomy: _Anatomy,
    n_clusters: int,
    spacing_mm: float,
    rng: np.random.Generator,
    speck_count: tuple[int, int] = SPECKS_PER_CLUSTER,
    amplitude: tuple[float, float] = SPECK_CONTRAST,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw up to ``n_clusters`` clusters of ``speck_count`` specks where ``anatomy.allowed``; returns the mask."""
    mask = np.zeros(pixels.shape, dtype=bool)
    clusters: list[dict[str, Any]] = []
    if n_clusters <= 0:
        return mask, clusters
    factor = anatomy.factor
    working_mm = spacing_mm * factor
    room_mm = ndimage.distance_transform_edt(anatomy.allowed) * working_mm  # clearance inside the region
    centres: list[tuple[float, float, float]] = []  # row, col, radius in full-resolution pixels
    gap_mm = 3.0
    for _ in range(n_clusters):
        spread_mm = rng.uniform(1.5, 5.0)
        candidates = np.empty((0, 2), dtype=np.float64)
        while spread_mm >= 0.75:
            picks = np.argwhere(room_mm >= spread_mm + 1.5)
            candidates = (picks + 0.5) * factor  # full-resolution coordinates of working-pixel centres
            for row, col, radius in centres:
                apart = np.hypot(candidates[:, 0] - row, candidates[:, 1] - col)
                candidates = candidates[apart > radius + (spread_mm + gap_mm) / spacing_mm]
            if len(candidates):
                break
            spread_mm /= 1.5
        if not len(candidates):
            logger.warning("no room for calcification cluster %d in a %dx%d image", len(clusters) + 1, *pixels.shape)
            break
        spread = spread_mm / spacing_mm
        jitter = rng.uniform(-0.5, 0.5, size=2) * factor
        pick = candidates[rng.integers(len(candidates))]
        centre = (float(pick[0] + jitter[0]), float(pick[1] + jitter[1]))
        wanted = int(rng.integers(speck_count[0], speck_count[1] + 1))
        aspect = rng.uniform(1.0, 2.0)
        orientation = rng.uniform(0.0, np.pi)
        specks: list[list[float]] = []
        reaches: list[float] = []
        for attempt in range(wanted * 40 + 400):
            if len(specks) == wanted or (attempt >= wanted * 40 and len(specks) >= speck_count[0]):
                break
            radial, turn = math.sqrt(rng.uniform()), rng.uniform(0.0, 2 * np.pi)
            along, across = radial * spread * math.cos(turn), radial * spread / aspect * math.sin(turn)
            row = centre[0] + along * math.sin(orientation) + across * math.cos(orientation)
            col = centre[1] + along * math.cos(orientation) - across * math.sin(orientation)
            # in a cramped cluster, fall back to the smallest specks so that every cluster has at least 3
            diameter = speck_diameter_px(spacing_mm, rng) if attempt < wanted * 40 else rng.uniform(1.0, 2.0)
            if any(math.hypot(row - r, col - c) < 0.8 * (diameter + d) + 5.0 for r, c, d in specks):
                continue
            specks.append([row, col, diameter])
        for row, col, diameter in specks:
            reach = draw_speck(pixels, mask, (row, col), diameter, rng.uniform(*amplitude), rng)
            reaches.append(math.hypot(row - centre[0], col - centre[1]) + reach)
        radius_px = max(reaches) if reaches else 0.0
        centres.append((centre[0], centre[1], radius_px))
        clusters.append(
            {
                "row": int(centre[0]),
                "col": int(centre[1]),
                "radius_px": round(radius_px + 1.0, 1),
                "n_specks": len(specks),
                "specks": [[round(r, 1), round(c, 1), round(d, 2)] for r, c, d in specks],
            }
        )
    return mask, clusters


# ---------------------------------------------------------------------------------------------------
# Public API


def synthesize_case(
    height: int = 1400,
    width: int = 1100,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    view: str = "CC",
    laterality: str = "R",
    n_clusters: int = 1,
    pixel_spacing_mm: float = 0.085,
    patient_id: str = "SYN0000",
    age: int = 55,
    density: float | None = None,
    specks_per_cluster: tuple[int, int] = SPECKS_PER_CLUSTER,
    speck_amplitude: tuple[float, float] = SPECK_CONTRAST,
) -> SyntheticCase:
    """Generate one 12-bit mammogram (bright = dense) with ``n_clusters`` calcification clusters.

    Laterality "R" puts the chest wall on the right edge, "L" on the left (hung facing); MLO views get a pectoral
    muscle in the upper chest-wall corner. Calcifications are placed inside the breast, at least 8 mm
    from the skin line and 3 mm from the muscle. ``density`` (0-1, share of the glandular region that
    is dense) defaults to a random value that falls with ``age``. Each cluster has between
    ``specks_per_cluster`` specks (inclusive; fewer only if a tiny image has no room), each raised by
    ``speck_amplitude`` over the tissue (more where needed to stand out). Pass ``seed`` or a ``rng``.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if laterality not in LATERALITIES:
        raise ValueError(f"laterality must be one of {LATERALITIES}, got {laterality!r}")
    if height < 64 or width < 64:
        raise ValueError(f"image must be at least 64x64 pixels, got {height}x{width}")
    if not 0.02 <= pixel_spacing_mm <= 1.0:
        raise ValueError(f"pixel spacing {pixel_spacing_mm} mm is not a mammography spacing")
    low, high = (int(v) for v in specks_per_cluster)
    if not 1 <= low <= high <= 50:
        raise ValueError(f"specks_per_cluster must be (low, high), 1 <= low <= high <= 50: {specks_per_cluster}")
    if not 0.0 < speck_amplitude[0] <= speck_amplitude[1] <= MAX_VALUE:
        raise ValueError(f"speck_amplitude must be (low, high), 0 < low <= high <= {MAX_VALUE}: {speck_amplitude}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    if density is None:
        density = float(np.clip(0.62 - 0.0075 * (age - 30) + rng.normal(0.0, 0.08), 0.12, 0.75))

    anatomy = _build_anatomy(height, width, view, pixel_spacing_mm, density, rng)
    shape = (height, width)
    pixels = _upsample(anatomy.intensity, anatomy.factor, shape)
    breast = _upsample(anatomy.radius, anatomy.factor, shape) < 1.0
    if anatomy.muscle.any():
        pectoral = (_upsample(anatomy.muscle, anatomy.factor, shape) >= 0.5) & breast
    else:
        pectoral = np.zeros(shape, dtype=bool)

    # Fine structure (a few pixels wide) and quantum noise that grows with the signal.
    white = rng.standard_normal(shape, dtype=np.float32)
    fine = ndimage.gaussian_filter(white, 1.2)
    fine *= np.float32(1.0 / (fine.std() + 1e-6))
    white *= np.float32(0.004) * pixels + np.float32(4.0)
    white += np.where(breast, np.float32(18.0) * fine, np.float32(0.0))
    pixels += white

    amplitude = (float(speck_amplitude[0]), float(speck_amplitude[1]))
    calcifications, clusters = _place_clusters(
        pixels, anatomy, n_clusters, pixel_spacing_mm, rng, (low, high), amplitude
    )
    pixels = np.clip(np.rint(pixels), 0, MAX_VALUE).astype(np.uint16)
    if laterality == "R":  # built with the chest wall on the left: mirror a right breast
        pixels, calcifications = pixels[:, ::-1], calcifications[:, ::-1]
        breast, pectoral = breast[:, ::-1], pectoral[:, ::-1]
        for cluster in clusters:
            cluster["col"] = width - 1 - cluster["col"]
            cluster["specks"] = [[r, round(width - c, 1), d] for r, c, d in cluster["specks"]]
    return SyntheticCase(
        pixels=np.ascontiguousarray(pixels),
        calcification_mask=np.ascontiguousarray(calcifications, dtype=np.uint8),
        breast_mask=np.ascontiguousarray(breast),
        pectoral_mask=np.ascontiguousarray(pectoral),
        clusters=clusters,
        view=view,
        laterality=laterality,
        patient_id=patient_id,
        age=int(age),
        pixel_spacing_mm=float(pixel_spacing_mm),
    )


def write_case(
    case: SyntheticCase, out_dir: str | Path, image_id: str, fmt: str = "png", monochrome1: bool = False
) -> dict[str, Any]:
    """Write the image and its mask in MONAI Label's datastore layout; returns the metadata row.

    The image goes to ``<out_dir>/<image_id>.png`` (16-bit grayscale, values preserved exactly) or
    ``.dcm`` (DICOM MG with patient id, age, laterality, view and spacing; ``monochrome1`` stores it
    inverted as MONOCHROME1). The mask goes to ``<out_dir>/labels/final/<image_id>.png`` (uint8, 0/1).
    """
    from PIL import Image

    from plaid.io.dicom import write_dicom_mammogram
    from plaid.io.labels import write_label_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        if monochrome1:
            raise ValueError("monochrome1 applies to DICOM output only")
        file = out_dir / f"{image_id}.png"
        Image.fromarray(np.ascontiguousarray(case.pixels, dtype=np.uint16)).save(file)
    elif fmt == "dcm":
        file = write_dicom_mammogram(
            out_dir / f"{image_id}.dcm",
            case.pixels,
            bits_stored=12,
            monochrome1=monochrome1,
            pixel_spacing_mm=case.pixel_spacing_mm,
            laterality=case.laterality,
            view=case.view,
            patient_id=case.patient_id,
            age_years=case.age,
        )
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    write_label_png(out_dir / "labels" / "final" / f"{image_id}.png", case.calcification_mask)
    logger.debug("wrote %s and its mask (%d clusters, %d specks)", file, len(case.clusters), case.n_specks)
    return {
        "image_id": image_id,
        "file": file.name,
        "label": f"labels/final/{image_id}.png",
        "patient_id": case.patient_id,
        "age": case.age,
        "laterality": case.laterality,
        "view": case.view,
        "pixel_spacing_mm": case.pixel_spacing_mm,
        "n_clusters": len(case.clusters),
        "n_specks": case.n_specks,
    }


def _spread_ages(n_patients: int, rng: np.random.Generator, low: int = 31, high: int = 75) -> list[int]:
    """One age per patient, stratified over [low, high] and shuffled."""
    order = rng.permutation(n_patients)
    span = high - low + 1
    return [int(min(high, low + math.floor(span * (rank + rng.uniform()) / n_patients))) for rank in order]


def generate_dataset(
    out_dir: str | Path,
    count: int,
    seed: int = 0,
    height: int = 1400,
    width: int = 1100,
    formats: Sequence[str] = FORMATS,
    calcified_fraction: float = 0.75,
    monochrome1_every: int = 3,
    max_clusters: int = 3,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write ``count`` synthetic mammograms, their masks and ``metadata.csv``; returns the metadata rows.

    Images come in pairs per patient (``SYN0001``, ...): CC then MLO of the same breast, with the same
    age (ages spread over 31-75) and pixel spacing (0.07-0.1 mm); laterality alternates R/L per
    patient. Formats alternate per image (shifted every second patient so that each view and side
    appears in each format); every ``monochrome1_every``-th DICOM is MONOCHROME1 (0: none). About
    ``calcified_fraction`` of the patients have 1 to ``max_clusters`` clusters in both views; the
    others are normal. Image ids are ``<patient>_<side>_<view>``. ``progress`` shows a tqdm bar.
    """
    formats = tuple(formats)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not formats or any(fmt not in FORMATS for fmt in formats):
        raise ValueError(f"formats must be taken from {FORMATS}, got {formats}")
    if not 0.0 <= calcified_fraction <= 1.0:
        raise ValueError(f"calcified_fraction must be within [0, 1], got {calcified_fraction}")
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be at least 1, got {max_clusters}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_patients = (count + 1) // 2
    ages = _spread_ages(n_patients, rng)
    n_normal = int(round(n_patients * (1.0 - calcified_fraction)))
    normal = set(rng.permutation(n_patients)[:n_normal].tolist())
    cluster_counts = [0 if p in normal else int(rng.integers(1, max_clusters + 1)) for p in range(n_patients)]
    spacings = [round(float(rng.uniform(0.07, 0.1)), 4) for _ in range(n_patients)]  # one detector per patient

    indices: Sequence[int] | Any = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synthesising", unit="image")
    rows: list[dict[str, Any]] = []
    dicom_count = 0
    for index in indices:
        patient = index // 2
        view = VIEWS[index % 2]
        laterality = "R" if patient % 2 == 0 else "L"
        fmt = formats[(index + patient // 2) % len(formats)]
        patient_id = f"SYN{patient + 1:04d}"
        case = synthesize_case(
            height,
            width,
            rng=rng,
            view=view,
            laterality=laterality,
            n_clusters=cluster_counts[patient],
            pixel_spacing_mm=spacings[patient],
            patient_id=patient_id,
            age=ages[patient],
        )
        monochrome1 = False
        if fmt == "dcm":
            dicom_count += 1
            monochrome1 = monochrome1_every > 0 and dicom_count % monochrome1_every == 0
        rows.append(write_case(case, out_dir, f"{patient_id}_{laterality}_{view}", fmt=fmt, monochrome1=monochrome1))
    with (out_dir / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METADATA_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    logger.info("wrote %d synthetic mammograms, masks and metadata.csv to %s", len(rows), out_dir)
    return rows

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

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from plaid.synth.anatomy import Anatomy, build_anatomy, upsample
from plaid.synth.specks import draw_speck, speck_diameter_px

logger = logging.getLogger(__name__)

MAX_VALUE = 4095
VIEWS = ("CC", "MLO")
LATERALITIES = ("L", "R")
SPECKS_PER_CLUSTER = (3, 12)
SPECK_CONTRAST = (500.0, 1200.0)


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
# Calcifications (full resolution, chest wall on the left)


def _place_clusters(
    pixels: np.ndarray,
    anatomy: Anatomy,
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

    anatomy = build_anatomy(height, width, view, pixel_spacing_mm, density, rng)
    shape = (height, width)
    pixels = upsample(anatomy.intensity, anatomy.factor, shape)
    breast = upsample(anatomy.radius, anatomy.factor, shape) < 1.0
    if anatomy.muscle.any():
        pectoral = (upsample(anatomy.muscle, anatomy.factor, shape) >= 0.5) & breast
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

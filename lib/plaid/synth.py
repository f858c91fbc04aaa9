"""Synthetic mammograms with microcalcification clusters, for sample data, tests and benchmarks.

The images are not meant to fool a radiologist; they give the pipeline the structure it relies on:
a breast-shaped, textured, 12-bit bright region on a dark background, a pectoral muscle on MLO views,
tissue thinning toward the skin line, and clusters of small bright specks (0.1-1 mm) inside the
breast whose exact pixels are known (the ground-truth mask).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

MAX_VALUE = 4095
BACKGROUND_LEVEL = 60.0
FAT_LEVEL = 1250.0
DENSE_GAIN = 1500.0
PECTORAL_LEVEL = 2900.0


@dataclass
class SyntheticCase:
    """One generated mammogram and everything known about it."""

    pixels: np.ndarray
    calcification_mask: np.ndarray
    breast_mask: np.ndarray
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


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with features about ``scale_px`` pixels wide (made at low resolution)."""
    factor = max(1, int(scale_px // 4))
    small_shape = (max(2, shape[0] // factor + 2), max(2, shape[1] // factor + 2))
    small = ndimage.gaussian_filter(rng.standard_normal(small_shape), sigma=max(scale_px / factor / 2, 0.5))
    zoomed = ndimage.zoom(small, factor, order=1)[: shape[0], : shape[1]]
    if zoomed.shape != shape:
        zoomed = np.pad(zoomed, [(0, shape[0] - zoomed.shape[0]), (0, shape[1] - zoomed.shape[1])], mode="edge")
    return (zoomed - zoomed.mean()) / (zoomed.std() + 1e-9)


def _breast_geometry(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius from the chest-wall centre (<1 inside the breast) and the breast mask.

    Built with the chest wall on the left edge; the caller flips for the other side.
    """
    centre_row = height * rng.uniform(0.46, 0.54)
    semi_rows = height * rng.uniform(0.40, 0.47)
    semi_cols = width * rng.uniform(0.70, 0.86)
    rows = (np.arange(height, dtype=np.float32)[:, None] - centre_row) / semi_rows
    cols = np.arange(width, dtype=np.float32)[None, :] / semi_cols
    wobble = 1.0 + 0.03 * smooth_noise((height, width), max(height, width) / 6, rng).astype(np.float32)
    radius = np.sqrt(rows**2 + cols**2) / wobble
    return radius, radius < 1.0


def _pectoral_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Triangle in the top-left corner (chest-wall side) for MLO views."""
    depth_rows = height * rng.uniform(0.35, 0.55)
    depth_cols = width * rng.uniform(0.22, 0.35)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    return cols < depth_cols * (1.0 - rows / depth_rows)


def _draw_speck(pixels: np.ndarray, mask: np.ndarray, row: float, col: float, diameter: float,
                amplitude: float) -> None:
    """Add one speck (flat top, soft edge) and mark its pixels in ``mask``."""
    radius = diameter / 2.0
    reach = int(np.ceil(radius * 2 + 2))
    top, bottom = max(0, int(row) - reach), min(pixels.shape[0], int(row) + reach + 1)
    left, right = max(0, int(col) - reach), min(pixels.shape[1], int(col) + reach + 1)
    yy, xx = np.ogrid[top:bottom, left:right]
    distance = np.sqrt((yy - row) ** 2 + (xx - col) ** 2)
    profile = np.exp(-((distance / max(radius, 0.5)) ** 4))
    pixels[top:bottom, left:right] += amplitude * profile
    footprint = distance <= max(radius, 0.5)
    if not footprint.any():
        footprint[int(row) - top, int(col) - left] = True
    mask[top:bottom, left:right] |= footprint


def _place_clusters(pixels: np.ndarray, allowed: np.ndarray, n_clusters: int, spacing_mm: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``n_clusters`` clusters of 3-12 specks inside ``allowed``; returns the speck mask."""
    mask = np.zeros(pixels.shape, dtype=bool)
    clusters: list[dict[str, Any]] = []
    candidates = np.argwhere(ndimage.binary_erosion(allowed, iterations=int(4.0 / spacing_mm)))
    if len(candidates) == 0:
        candidates = np.argwhere(allowed)
    for _ in range(n_clusters):
        centre = candidates[rng.integers(len(candidates))]
        spread = rng.uniform(1.5, 4.0) / spacing_mm
        count = int(rng.integers(3, 13))
        placed = 0
        for _attempt in range(count * 20):
            if placed == count:
                break
            row = centre[0] + rng.normal(0, spread / 2)
            col = centre[1] + rng.normal(0, spread / 2)
            if not (0 <= row < pixels.shape[0] and 0 <= col < pixels.shape[1]) or not allowed[int(row), int(col)]:
                continue
            diameter = rng.uniform(0.15, 0.9) / spacing_mm
            _draw_speck(pixels, mask, row, col, diameter, amplitude=rng.uniform(600, 1200))
            placed += 1
        clusters.append({"row": int(centre[0]), "col": int(centre[1]), "radius_px": round(float(spread), 1),
                         "n_specks": placed})
    return mask & allowed, clusters


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
) -> SyntheticCase:
    """Generate one 12-bit mammogram (bright = dense) with ``n_clusters`` calcification clusters.

    Laterality "R" puts the chest wall on the left edge, "L" on the right edge; MLO views get a
    pectoral muscle in the upper chest-wall corner. Calcifications never fall in the muscle.
    """
    if view not in ("CC", "MLO") or laterality not in ("L", "R"):
        raise ValueError(f"view must be CC/MLO and laterality L/R, got {view}/{laterality}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    radius, breast = _breast_geometry(height, width, rng)
    thickness = np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0)) ** 0.6
    glandular = 0.6 * smooth_noise((height, width), 90 / (pixel_spacing_mm / 0.085), rng)
    glandular += 0.4 * smooth_noise((height, width), 25 / (pixel_spacing_mm / 0.085), rng)
    density = np.clip(0.45 + 0.3 * glandular - 0.35 * radius, 0.0, 1.0)
    tissue = FAT_LEVEL + DENSE_GAIN * density
    pixels = np.where(breast, tissue * (0.35 + 0.65 * thickness), BACKGROUND_LEVEL).astype(np.float32)
    allowed = breast & (radius < 0.88)
    if view == "MLO":
        pectoral = _pectoral_mask(height, width, rng) & breast
        muscle = PECTORAL_LEVEL + 120 * smooth_noise((height, width), 40, rng)
        pixels = np.where(pectoral, muscle, pixels).astype(np.float32)
        allowed &= ~ndimage.binary_dilation(pectoral, iterations=int(3.0 / pixel_spacing_mm))
    pixels += rng.normal(0.0, 12.0, pixels.shape).astype(np.float32)
    calcifications, clusters = _place_clusters(pixels, allowed, n_clusters, pixel_spacing_mm, rng)
    pixels = np.clip(np.rint(pixels), 0, MAX_VALUE).astype(np.uint16)
    breast_mask = breast
    if laterality == "L":
        pixels, calcifications, breast_mask = pixels[:, ::-1], calcifications[:, ::-1], breast_mask[:, ::-1]
        for cluster in clusters:
            cluster["col"] = width - 1 - cluster["col"]
    return SyntheticCase(
        pixels=np.ascontiguousarray(pixels),
        calcification_mask=np.ascontiguousarray(calcifications.astype(np.uint8)),
        breast_mask=np.ascontiguousarray(breast_mask),
        clusters=clusters,
        view=view,
        laterality=laterality,
        patient_id=patient_id,
        age=age,
        pixel_spacing_mm=pixel_spacing_mm,
    )


def write_case(case: SyntheticCase, out_dir: str | Path, image_id: str, fmt: str = "png",
               monochrome1: bool = False) -> dict[str, Any]:
    """Write the image (16-bit PNG or DICOM MG) and its mask as ``labels/final/<image_id>.png``.

    Returns the metadata row for the case.
    """
    from PIL import Image

    from plaid.dicom_io import write_dicom_mammogram
    from plaid.label_io import write_label_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        file = out_dir / f"{image_id}.png"
        Image.fromarray(case.pixels).save(file)
    elif fmt == "dcm":
        file = write_dicom_mammogram(
            out_dir / f"{image_id}.dcm", case.pixels, bits_stored=12, monochrome1=monochrome1,
            pixel_spacing_mm=case.pixel_spacing_mm, laterality=case.laterality, view=case.view,
            patient_id=case.patient_id, age_years=case.age,
        )
    else:
        raise ValueError(f"format must be 'png' or 'dcm', got {fmt!r}")
    write_label_png(out_dir / "labels" / "final" / f"{image_id}.png", case.calcification_mask)
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


METADATA_COLUMNS = ("image_id", "file", "label", "patient_id", "age", "laterality", "view", "pixel_spacing_mm",
                    "n_clusters", "n_specks")


def generate_dataset(
    out_dir: str | Path,
    count: int,
    seed: int = 0,
    height: int = 1400,
    width: int = 1100,
    formats: Sequence[str] = ("png", "dcm"),
    calcified_fraction: float = 0.75,
    monochrome1_every: int = 3,
    max_clusters: int = 3,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write ``count`` cases (two views per patient) plus ``metadata.csv``; returns the metadata rows.

    Formats alternate per patient, every ``monochrome1_every``-th DICOM is MONOCHROME1, and about
    ``calcified_fraction`` of the patients have 1 to ``max_clusters`` clusters (in both of their views).
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    dicom_count = 0
    indices = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synthesising", unit="image")
    patient_plan: dict[int, tuple[str, int, str, int]] = {}
    for index in indices:
        patient = index // 2
        if patient not in patient_plan:
            laterality = "R" if patient % 2 == 0 else "L"
            age = int(rng.integers(31, 76))
            clusters = int(rng.integers(1, max_clusters + 1)) if rng.random() < calcified_fraction else 0
            patient_plan[patient] = (laterality, age, formats[patient % len(formats)], clusters)
        laterality, age, fmt, clusters = patient_plan[patient]
        view = "CC" if index % 2 == 0 else "MLO"
        patient_id = f"SYN{patient + 1:04d}"
        case = synthesize_case(height, width, rng=rng, view=view, laterality=laterality, n_clusters=clusters,
                               patient_id=patient_id, age=age, pixel_spacing_mm=float(rng.uniform(0.07, 0.1)))
        monochrome1 = False
        if fmt == "dcm":
            dicom_count += 1
            monochrome1 = monochrome1_every > 0 and dicom_count % monochrome1_every == 0
        image_id = f"{patient_id}_{laterality}_{view}"
        row = write_case(case, out_dir, image_id, fmt=fmt, monochrome1=monochrome1)
        row["pixel_spacing_mm"] = round(row["pixel_spacing_mm"], 4)
        rows.append(row)
    with (out_dir / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METADATA_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    logger.info("wrote %d synthetic mammograms to %s", len(rows), out_dir)
    return rows

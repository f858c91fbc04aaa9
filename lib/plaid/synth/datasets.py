"""Synthetic datasets on disk: one case written as an image and a mask, and whole datasets of patients
with both views of both breasts and a ``metadata.csv`` (images from `plaid.synth.generator`)."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plaid.synth.generator import VIEWS, SyntheticCase, synthesize_case

logger = logging.getLogger(__name__)

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

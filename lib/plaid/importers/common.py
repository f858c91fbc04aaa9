"""What every dataset adapter writes: images, masks, metadata.csv and an import report."""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plaid.io.labels import write_label_png
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM, region_count
from plaid.serialization import write_json

logger = logging.getLogger(__name__)

MASK_FOLDER = "masks"
FINDINGS_FOLDER = "findings"
METADATA_FILE = "metadata.csv"
REPORT_FILE = "import_report.json"
BASE_COLUMNS = ("image_id", "patient_id", "pixel_spacing_mm", "calcified", "has_mask", "regions")


@dataclass
class ImportedCase:
    """One image as an adapter found it.

    ``mask`` marks located calcifications (all zeros for an image without any); it is None when the image
    has calcifications that cannot be located (image-level positive only), so no mask is written and
    patch-level training and evaluation leave it out. ``findings`` marks other abnormalities (masses,
    distortions), written to ``findings/`` for use as hard negatives.
    """

    image_id: str
    source: Path
    patient_id: str
    calcified: bool
    mask: np.ndarray | None
    pixel_spacing_mm: float | None = None
    findings: np.ndarray | None = None
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeftOut:
    """An annotation (or a whole image) the adapter did not use, and why."""

    image_id: str
    reason: str


def disc_mask(shape: tuple[int, int], row: float, col: float, radius: float) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie within ``radius`` of (row, col); at least the centre pixel."""
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    disc = (rows - row) ** 2 + (cols - col) ** 2 <= float(radius) ** 2
    centre = (int(round(row)), int(round(col)))
    if 0 <= centre[0] < shape[0] and 0 <= centre[1] < shape[1]:
        disc[centre] = True
    return disc


def write_dataset(out: str | Path, cases: Sequence[ImportedCase], left_out: Iterable[LeftOut],
                  dataset: str) -> dict[str, Any]:
    """Write ``cases`` into ``out`` in PLAID's folder layout and return the import report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra_columns: list[str] = []
    for case in cases:
        extra_columns += [key for key in case.columns if key not in extra_columns and key not in BASE_COLUMNS]
    rows = []
    for case in cases:
        shutil.copyfile(case.source, out / f"{case.image_id}{case.source.suffix.lower()}")
        if case.mask is not None:
            write_label_png(out / MASK_FOLDER / f"{case.image_id}.png", case.mask)
        if case.findings is not None and case.findings.any():
            write_label_png(out / FINDINGS_FOLDER / f"{case.image_id}.png", case.findings)
        rows.append({
            "image_id": case.image_id, "patient_id": case.patient_id,
            "pixel_spacing_mm": "" if case.pixel_spacing_mm is None else f"{case.pixel_spacing_mm:g}",
            "calcified": int(case.calcified), "has_mask": int(case.mask is not None),
            "regions": "" if case.mask is None else region_count(case.mask, case.pixel_spacing_mm),
            **{key: case.columns.get(key, "") for key in extra_columns},
        })
    with (out / METADATA_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*BASE_COLUMNS, *extra_columns])
        writer.writeheader()
        writer.writerows(rows)
    left = [{"image_id": item.image_id, "reason": item.reason} for item in left_out]
    for item in left:
        logger.warning("left out %s: %s", item["image_id"], item["reason"])
    report = {
        "dataset": dataset,
        "images": len(cases),
        "patients": len({case.patient_id for case in cases}),
        "calcified_images": sum(case.calcified for case in cases),
        "regions": sum(int(row["regions"] or 0) for row in rows),
        "region_rule": f"clusters: marks at most {DEFAULT_CLUSTER_GAP_MM:g} mm apart (plaid.patches.regions)",
        "image_level_only": [case.image_id for case in cases if case.calcified and case.mask is None],
        "left_out": left,
    }
    write_json(out / REPORT_FILE, report)
    return report

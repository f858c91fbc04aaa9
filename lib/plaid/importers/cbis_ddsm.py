"""CBIS-DDSM adapter: case-description CSVs plus full-mammogram and ROI-mask DICOMs to PLAID's layout.

Each CSV row is one abnormality (``patient_id``, ``left or right breast``, ``image view``, ``abnormality
type``, ``pathology``, ``image file path``, ``ROI mask file path`` ...); several rows can name the same
image and their ROI masks are united. Paths in the CSVs follow the TCIA folder names; when a path does not
exist as written, the DICOMs are looked up under the folder named by its first component (TCIA downloads
rename the series folders). Of the two DICOMs in an ROI folder the mask is the one with the image's size.
Rows from the mass CSVs become findings (hard negatives). CBIS-DDSM headers carry no pixel spacing: pass
it with ``pixel_spacing_mm``.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from plaid.errors import PlaidInputError
from plaid.importers.common import ImportedCase, LeftOut, write_dataset

logger = logging.getLogger(__name__)

IMAGE_COLUMN = "image file path"
ROI_COLUMN = "ROI mask file path"


def _column(row: dict[str, str], *names: str) -> str:
    """The first of ``names`` present in the row (CBIS-DDSM spells some columns two ways), stripped."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name].strip()
    return ""


def read_case_rows(csv_paths: list[Path]) -> list[dict[str, str]]:
    """Every row of the description CSVs, with the CSV it came from."""
    rows = []
    for path in csv_paths:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {IMAGE_COLUMN, ROI_COLUMN, "patient_id"} - set(reader.fieldnames or [])
            if missing:
                raise PlaidInputError(f"not a CBIS-DDSM description CSV (missing {', '.join(sorted(missing))})", path)
            rows += [{**row, "_csv": str(path)} for row in reader]
    return rows


def dicom_candidates(root: Path, listed: str) -> list[Path]:
    """The DICOM named in the CSV if it exists, else every DICOM under the folder its first component names."""
    relative = listed.strip().replace("\\", "/")
    exact = root / relative
    if exact.is_file():
        return [exact]
    first = relative.split("/")[0]
    folder = root / first
    return sorted(folder.rglob("*.dcm")) if folder.is_dir() else []


def _read_header(path: Path):
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True)


def read_roi_mask(root: Path, listed: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The ROI mask DICOM with the image's shape (None when there is none), as a boolean array."""
    import pydicom

    for candidate in dicom_candidates(root, listed):
        header = _read_header(candidate)
        if (int(header.Rows), int(header.Columns)) == shape:
            return pydicom.dcmread(str(candidate)).pixel_array > 0
    return None


def import_cbis_ddsm(root: str | Path, csv_paths: list[str | Path], out: str | Path,
                     pixel_spacing_mm: float | None = None) -> dict:
    """Write the images the CSVs describe to ``out`` in PLAID's layout; returns the import report."""
    root = Path(root)
    if not root.is_dir():
        raise PlaidInputError("CBIS-DDSM folder does not exist", root)
    by_image: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_case_rows([Path(p) for p in csv_paths]):
        by_image[_column(row, IMAGE_COLUMN).replace("\\", "/").split("/")[0]].append(row)
    cases, left_out = [], []
    for image_id in sorted(by_image):
        rows = by_image[image_id]
        found = dicom_candidates(root, _column(rows[0], IMAGE_COLUMN))
        if not found:
            left_out.append(LeftOut(image_id, "full mammogram DICOM not found"))
            continue
        header = _read_header(found[0])
        shape = (int(header.Rows), int(header.Columns))
        spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
        calcs = np.zeros(shape, dtype=bool)
        findings = np.zeros(shape, dtype=bool)
        calcified = False
        for row in rows:
            kind = _column(row, "abnormality type").lower()
            roi = read_roi_mask(root, _column(row, ROI_COLUMN), shape)
            if roi is None:
                left_out.append(LeftOut(image_id, f"abnormality {_column(row, 'abnormality id')}: no ROI mask "
                                                  f"of the image's size {shape[0]}x{shape[1]}"))
                calcified |= kind == "calcification"
                continue
            if kind == "calcification":
                calcs |= roi
                calcified = True
            else:
                findings |= roi
        located = bool(calcs.any()) or not calcified
        cases.append(ImportedCase(
            image_id=image_id, source=found[0], patient_id=_column(rows[0], "patient_id"), calcified=calcified,
            mask=calcs if located else None,
            pixel_spacing_mm=float(spacing[0]) if spacing else pixel_spacing_mm,
            findings=findings,
            columns={
                "laterality": _column(rows[0], "left or right breast"),
                "view": _column(rows[0], "image view"),
                "density": _column(rows[0], "breast density", "breast_density"),
                "pathology": ";".join(sorted({_column(r, "pathology") for r in rows} - {""})),
                "abnormalities": ";".join(sorted({_column(r, "abnormality type") for r in rows} - {""})),
            },
        ))
    if not cases:
        raise PlaidInputError("no image named in the CSVs was found", root)
    return write_dataset(out, cases, left_out, dataset="CBIS-DDSM")

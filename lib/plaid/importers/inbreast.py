"""INbreast adapter: AllDICOMs + AllXML (OsiriX plist ROIs) to PLAID's folder layout.

DICOM files are named ``<file id>_<patient>_MG_<side>_<view>_ANON.dcm``; the annotations of an image are
in ``<file id>.xml``, a property list whose ``Images[].ROIs[]`` entries have a ``Name`` and ``Point_px``
("(x, y)" strings, origin top-left). Calcifications are single points or small contours; "Cluster" ROIs
outline groups of them and are marked only with ``clusters=True``. Every other ROI (masses, distortions,
asymmetries) is a finding (hard negative). An image without an XML file has no annotated finding.
"""

from __future__ import annotations

import logging
import plistlib
import re
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from plaid.errors import PlaidInputError
from plaid.importers.common import ImportedCase, LeftOut, disc_mask, write_dataset

logger = logging.getLogger(__name__)

CALCIFICATION_NAMES = ("calcification", "calcifications")
CLUSTER_NAMES = ("cluster",)
POINT_RADIUS_PX = 2.0
POINT_PATTERN = re.compile(r"\(\s*([-\d.eE+]+)\s*,\s*([-\d.eE+]+)")


def parse_points(values: list[str]) -> np.ndarray:
    """(N, 2) array of (x, y) from Point_px strings such as '(1234.5, 678.0)'."""
    points = []
    for value in values:
        match = POINT_PATTERN.search(str(value))
        if match:
            points.append((float(match.group(1)), float(match.group(2))))
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def read_rois(xml_path: Path) -> list[tuple[str, np.ndarray]]:
    """(name, points) for every ROI of an INbreast XML file."""
    try:
        with xml_path.open("rb") as handle:
            content = plistlib.load(handle)
    except Exception as exc:
        raise PlaidInputError(f"cannot read INbreast ROI file ({type(exc).__name__}: {exc})", xml_path) from exc
    rois = []
    for image in content.get("Images", []):
        for roi in image.get("ROIs", []):
            rois.append((str(roi.get("Name", "")).strip(), parse_points(roi.get("Point_px", []))))
    return rois


def roi_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """A point becomes a small disc; two points a disc around them; a contour its filled polygon plus outline."""
    mask = np.zeros(shape, dtype=bool)
    if len(points) == 0:
        return mask
    if len(points) < 3:
        centre = points.mean(axis=0)
        spread = float(np.hypot(*(points.max(axis=0) - points.min(axis=0)))) / 2
        return disc_mask(shape, centre[1], centre[0], max(POINT_RADIUS_PX, spread))
    rows, cols = polygon(points[:, 1], points[:, 0], shape)
    mask[rows, cols] = True
    edge_rows = np.clip(np.rint(points[:, 1]).astype(int), 0, shape[0] - 1)
    edge_cols = np.clip(np.rint(points[:, 0]).astype(int), 0, shape[1] - 1)
    mask[edge_rows, edge_cols] = True
    return mask


def import_inbreast(dicom_dir: str | Path, xml_dir: str | Path, out: str | Path, clusters: bool = False) -> dict:
    """Write INbreast to ``out`` in PLAID's layout; returns the import report."""
    import pydicom

    dicom_dir, xml_dir = Path(dicom_dir), Path(xml_dir)
    for folder in (dicom_dir, xml_dir):
        if not folder.is_dir():
            raise PlaidInputError("folder does not exist", folder)
    cases, left_out = [], []
    for path in sorted(dicom_dir.glob("*.dcm")):
        parts = path.stem.split("_")
        if len(parts) < 2:
            left_out.append(LeftOut(path.stem, "file name is not <file id>_<patient>_..."))
            continue
        file_id, patient = parts[0], parts[1]
        header = pydicom.dcmread(str(path), stop_before_pixels=True)
        shape = (int(header.Rows), int(header.Columns))
        spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
        calcs = np.zeros(shape, dtype=bool)
        findings = np.zeros(shape, dtype=bool)
        names: set[str] = set()
        xml_path = xml_dir / f"{file_id}.xml"
        for name, points in read_rois(xml_path) if xml_path.is_file() else []:
            if len(points) == 0:
                left_out.append(LeftOut(file_id, f"ROI {name!r} without points"))
                continue
            names.add(name)
            lowered = name.lower()
            if lowered in CALCIFICATION_NAMES or (clusters and lowered in CLUSTER_NAMES):
                calcs |= roi_mask(shape, points)
            elif lowered not in CLUSTER_NAMES:
                findings |= roi_mask(shape, points)
        calcified = any(name.lower() in CALCIFICATION_NAMES + CLUSTER_NAMES for name in names)
        cases.append(ImportedCase(
            image_id=file_id, source=path, patient_id=patient, calcified=calcified,
            mask=calcs if calcs.any() or not calcified else None,
            pixel_spacing_mm=float(spacing[0]) if spacing else None, findings=findings,
            columns={"laterality": parts[3] if len(parts) > 3 else "", "view": parts[4] if len(parts) > 4 else "",
                     "rois": ";".join(sorted(names))},
        ))
    if not cases:
        raise PlaidInputError("no INbreast DICOM (*.dcm) found", dicom_dir)
    return write_dataset(out, cases, left_out, dataset="INbreast")

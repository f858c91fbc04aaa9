"""DICOM MG reading (Modality LUT, VOI LUT, MONOCHROME1 inversion, metadata) and writing."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import numpy as np

from plaid.errors import ImageReadError
from plaid.io.mammogram import ImageMeta, Mammogram

logger = logging.getLogger(__name__)

DIGITAL_MAMMOGRAPHY_PRESENTATION_SOP = "1.2.840.10008.5.1.4.1.1.1.2"


def parse_age(value: object) -> float | None:
    """Parse a DICOM Age String ('052Y', '006M', '010W', '003D') into years; None when absent/invalid."""
    text = str(value or "").strip().upper()
    if len(text) < 2 or not text[:-1].isdigit():
        return None
    number = float(text[:-1])
    per_year = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}.get(text[-1])
    return None if per_year is None else number / per_year


def format_age(years: float) -> str:
    """Format an age in whole years as a DICOM Age String such as '052Y'."""
    return f"{int(years):03d}Y"


def _stored_value_range(ds) -> tuple[float, float]:
    """Range of values after the Modality LUT / rescale, from BitsStored and PixelRepresentation."""
    if "ModalityLUTSequence" in ds:
        descriptor = ds.ModalityLUTSequence[0].LUTDescriptor
        return 0.0, float(2 ** int(descriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _output_value_range(ds) -> tuple[float, float]:
    """Range of values after the VOI transform pydicom applies (LUT preferred over window)."""
    if "VOILUTSequence" in ds:
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        return 0.0, float(2 ** int(descriptor[2]) - 1)
    return _stored_value_range(ds)


def read_dicom_mammogram(path: str | Path) -> Mammogram:
    """Read a DICOM mammogram: Modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    Pixels stay in float32 at full bit depth. Compressed transfer syntaxes decode when pydicom has a
    handler for them installed (pylibjpeg / GDCM); otherwise an `ImageReadError` says which is missing.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as exc:
        raise ImageReadError(f"not a DICOM file ({exc})", path) from exc
    except Exception as exc:
        raise ImageReadError(f"cannot parse DICOM ({type(exc).__name__}: {exc})", path) from exc
    if "PixelData" not in ds:
        raise ImageReadError("DICOM file has no pixel data", path)
    try:
        stored = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageReadError(
            f"cannot decode pixel data (transfer syntax {syntax}; {type(exc).__name__}: {exc})", path
        ) from exc
    if stored.ndim == 3 and int(ds.get("NumberOfFrames", 1) or 1) == 1 and stored.shape[-1] in (3, 4):
        raise ImageReadError(f"colour DICOM ({ds.get('PhotometricInterpretation')}) is not a mammogram", path)
    values = apply_modality_lut(stored, ds)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if "VOILUTSequence" in ds:  # a LUT is indexed by value, so it needs integers
        values = np.rint(values).astype(np.int64)
    if has_voi:
        values = apply_voi_lut(values, ds, index=0)
    values = np.asarray(values, dtype=np.float64)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "MONOCHROME1":
        low, high = _output_value_range(ds) if has_voi else _stored_value_range(ds)
        values = (high + low) - values
    meta = ImageMeta(
        path=str(path),
        file_format="dicom",
        pixel_spacing_mm=_pixel_spacing(ds),
        laterality=_laterality(ds),
        view=str(ds.get("ViewPosition", "") or "").strip() or None,
        patient_id=str(ds.get("PatientID", "") or "").strip() or None,
        age_years=parse_age(ds.get("PatientAge")),
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored", 0) or 0) or None,
        extra={
            "voi_applied": has_voi,
            "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
            "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        },
    )
    return Mammogram(pixels=values.astype(np.float32), meta=meta)


def read_dicom_identity(path: str | Path) -> tuple[str | None, float | None]:
    """(PatientID, age in years) from a DICOM file's header, without reading its pixels; (None, None) when the
    file is not readable DICOM (its error is reported when the film itself is read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["PatientID", "PatientAge"])
    except Exception as exc:  # any parse failure: the film's own read names it later
        logger.debug("no header identity for %s: %s", path, exc)
        return None, None
    return str(ds.get("PatientID", "") or "").strip() or None, parse_age(ds.get("PatientAge"))


def _pixel_spacing(ds) -> tuple[float, float] | None:
    """Row and column spacing in mm from PixelSpacing, else ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return None


def _laterality(ds) -> str | None:
    """Breast side ('L' or 'R') from ImageLaterality, else Laterality."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def patient_orientation(laterality: str | None, view: str | None) -> list[str] | None:
    """Patient Orientation (row direction, column direction) of a film hung the conventional way.

    The breasts face each other: a right breast has its chest wall on the right edge (rows run toward
    posterior, "P"), a left breast on the left edge ("A"). Down the film a CC runs from lateral to medial
    (toward the patient's left for a right breast), an MLO toward the feet ("F"). None when unknown.
    """
    if laterality not in ("L", "R") or view not in ("CC", "MLO"):
        return None
    rows = "P" if laterality == "R" else "A"
    columns = "F" if view == "MLO" else ("L" if laterality == "R" else "R")
    return [rows, columns]


def write_dicom_mammogram(
    path: str | Path,
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    monochrome1: bool = False,
    pixel_spacing_mm: float = 0.085,
    laterality: str | None = None,
    view: str | None = None,
    patient_id: str = "ANON",
    age_years: float | None = None,
    window: tuple[float, float] | None = None,
    study_description: str = "MAMMOGRAPHY (SYNTHETIC)",
    accession_number: str | None = None,
) -> Path:
    """Write an uncompressed DICOM Digital Mammography (For Presentation) image.

    ``pixels`` are display values (bright = dense) in [0, 2**bits_stored - 1]; with ``monochrome1`` they
    are stored inverted so readers must invert them back. ``window`` adds a VOI window (center, width).
    Laterality and view also give the series description ("R CC") and the Patient Orientation of a film
    hung the conventional way (`patient_orientation`); the accession number defaults to the patient id
    with the laterality and view.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    if pixels.ndim != 2:
        raise ValueError(f"expected 2-D pixels, got shape {pixels.shape}")
    max_value = 2**bits_stored - 1
    display = np.clip(np.rint(pixels), 0, max_value).astype(np.uint16)
    stored = (max_value - display).astype(np.uint16) if monochrome1 else display

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MAMMOGRAPHY_PRESENTATION_SOP
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    today = datetime.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientID = patient_id
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    if age_years is not None:
        ds.PatientAge = format_age(age_years)
    ds.PatientSex = "F"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StudyDescription = study_description
    ds.SeriesDescription = " ".join(part for part in (laterality, view) if part) or "MAMMOGRAM"
    ds.AccessionNumber = (accession_number or f"{patient_id}{laterality or ''}{view or ''}")[:16]
    ds.StudyID = "1"
    if laterality:
        ds.ImageLaterality = laterality
    if view:
        ds.ViewPosition = view
    orientation = patient_orientation(laterality, view)
    if orientation:
        ds.PatientOrientation = orientation
    ds.ImagerPixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    if window is not None:
        ds.WindowCenter = float(window[0])
        ds.WindowWidth = float(window[1])
        ds.VOILUTFunction = "LINEAR"
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), write_like_original=False)
    return path

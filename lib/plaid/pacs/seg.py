"""PLAID's result as a DICOM SEG (highdicom), and any SEG read back as a mask with pydicom.

Writing: a binary SEG referencing the mammogram, with plane geometry added (see `plaid.pacs.geometry`):
one segment "Calcification", or one calcification segment per given mask and label (PLAID's results: one
per positive patch, "Calcification patch 12: probability 0.52"). Reading: binary and fractional SEGs
(``1.2.840.10008.5.1.4.1.1.66.4``) and label map SEGs (``1.2.840.10008.5.1.4.1.1.66.7``, as OHIF exports
them, RLE compressed), whose frames are
matched to the image by ReferencedSOPInstanceUID. highdicom 0.22 and pydicom-seg reject label maps and
2-D MG geometry, hence the pydicom reader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import plaid
from plaid.errors import LabelShapeError, PlaidInputError
from plaid.pacs.codes import (
    ARTIFICIAL_INTELLIGENCE,
    BREAST,
    CALCIFICATION,
    CALCIFICATION_LABEL,
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
)
from plaid.pacs.geometry import with_plane_geometry

logger = logging.getLogger(__name__)

SEGMENTATION_SOP = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_SOP = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = (SEGMENTATION_SOP, LABEL_MAP_SEGMENTATION_SOP)
MANUFACTURER = "PLAID"
AUTOMATIC, MANUAL = "AUTOMATIC", "MANUAL"
# How every label of a positive patch starts (PLAID's OHIF configuration tells its boxes from a reader's by it).
BOX_LABEL_PREFIX = "Calcification patch"


@dataclass(frozen=True)
class SeriesInfo:
    """Series-level identity of a derived object PLAID writes."""

    description: str
    number: int = 901
    series_uid: str = ""

    def uid(self) -> str:
        """The given series UID, or a new one."""
        return self.series_uid or generate_uid()


def calcification_segment(algorithm_type: str = AUTOMATIC, model_name: str = "PLAID ResNet50 patch classifier",
                          number: int = 1, label: str = CALCIFICATION_LABEL):
    """highdicom's description of one calcification segment (default: number 1, 'Calcification')."""
    import highdicom as hd

    algorithm = None
    if algorithm_type == AUTOMATIC:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=model_name, version=plaid.__version__, family=ARTIFICIAL_INTELLIGENCE,
        )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
        segmented_property_type=CALCIFICATION,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues[algorithm_type],
        algorithm_identification=algorithm,
        anatomic_regions=[BREAST],
    )


def write_seg(source: Dataset, mask: np.ndarray, series: SeriesInfo, algorithm_type: str = AUTOMATIC,
              labels: list[str] | None = None) -> Dataset:
    """A binary DICOM SEG over the MG ``source``.

    ``mask`` is rows x columns (non-zero = calcification: one segment, 'Calcification'), or segments x rows x
    columns with one label per segment in ``labels`` (e.g. one segment per positive patch, named with its
    probability); segments may overlap.
    """
    import highdicom as hd

    mask = np.asarray(mask)
    shape = (int(source.Rows), int(source.Columns))
    layers = mask[np.newaxis] if mask.ndim == 2 else mask
    if layers.shape[1:] != shape:
        raise LabelShapeError(f"mask shape {mask.shape[-2:]} does not match image {shape}")
    if mask.ndim != 2 and (not labels or len(labels) != len(layers)):
        raise LabelShapeError(f"{len(layers)} segment masks need as many labels, got {len(labels or [])}")
    names = labels if mask.ndim != 2 else [CALCIFICATION_LABEL]
    geometry = with_plane_geometry(source)
    seg = hd.seg.Segmentation(
        source_images=[geometry],
        pixel_array=np.moveaxis(layers != 0, 0, -1).astype(np.uint8)[np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[calcification_segment(algorithm_type, number=number, label=name)
                              for number, name in enumerate(names, start=1)],
        series_instance_uid=series.uid(),
        series_number=series.number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="PLAID calcification",
        software_versions=plaid.__version__,
        device_serial_number="0",
        series_description=series.description,
        omit_empty_frames=False,
    )
    return seg


def box_label(patch: int, probability: float) -> str:
    """The name of a positive patch in PLAID's SEG and SR (OHIF shows it beside the box): patch and probability."""
    return f"{BOX_LABEL_PREFIX} {patch}: probability {probability:.2f}"


def patch_segments(mask: np.ndarray, positives: list[dict[str, Any]],
                   tissue: np.ndarray | None) -> tuple[np.ndarray, list[str] | None]:
    """`write_seg`'s segments for PLAID's result: one per positive patch (``{"patch", "box", "probability"}``),
    its box clipped to ``tissue`` (the breast, when given) and named with its probability; with no positive
    patch, ``mask`` as the one 'Calcification' segment (labels None)."""
    if not positives:
        return mask, None
    layers = np.zeros((len(positives), *np.shape(mask)), dtype=bool)
    for layer, entry in zip(layers, positives, strict=True):
        top, left, bottom, right = (int(v) for v in entry["box"])
        layer[max(top, 0):bottom, max(left, 0):right] = True
        if tissue is not None:
            layer &= tissue
    return layers, [box_label(int(entry["patch"]), float(entry["probability"])) for entry in positives]


def is_segmentation(ds: Dataset) -> bool:
    """True for a binary / fractional or a label map Segmentation instance."""
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES


def is_automatic(ds: Dataset) -> bool:
    """True when every segment says AUTOMATIC (a prediction such as PLAID's own, not a correction)."""
    segments = ds.get("SegmentSequence") or []
    return bool(segments) and all(str(s.get("SegmentAlgorithmType", "")).upper() == AUTOMATIC for s in segments)


def referenced_instances(ds: Dataset) -> set[str]:
    """SOPInstanceUIDs of the images a SEG's frames (or its series reference) point to."""
    uids = {uid for uid in (_frame_source(item) for item in ds.get("PerFrameFunctionalGroupsSequence") or []) if uid}
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        uid = _frame_source(shared[0])
        if uid:
            uids.add(uid)
    for series in ds.get("ReferencedSeriesSequence") or []:
        uids.update(str(item.ReferencedSOPInstanceUID) for item in series.get("ReferencedInstanceSequence") or [])
    return uids


def _frame_source(group: Dataset) -> str | None:
    """ReferencedSOPInstanceUID of a functional group's Derivation Image / Source Image item."""
    for derivation in group.get("DerivationImageSequence") or []:
        for source in derivation.get("SourceImageSequence") or []:
            if "ReferencedSOPInstanceUID" in source:
                return str(source.ReferencedSOPInstanceUID)
    return None


def _calcification_segments(ds: Dataset) -> set[int]:
    """Segment numbers that hold calcifications: those coded or labelled so, else every segment."""
    segments = list(ds.get("SegmentSequence") or [])
    chosen = set()
    for segment in segments:
        codes = [str(item.get("CodeValue", "")) for item in segment.get("SegmentedPropertyTypeCodeSequence") or []]
        if CALCIFICATION.value in codes or "calcif" in str(segment.get("SegmentLabel", "")).lower():
            chosen.add(int(segment.SegmentNumber))
    return chosen or {int(s.SegmentNumber) for s in segments}


def read_seg_mask(ds: Dataset, sop_instance_uid: str, shape: tuple[int, int]) -> np.ndarray:
    """The calcification mask (uint8 0/1, ``shape``) a SEG holds for the image ``sop_instance_uid``.

    Frames are matched to the image by their ReferencedSOPInstanceUID; a SEG whose frames name no
    source counts when its series reference names only this image. Binary, fractional (above half of
    MaximumFractionalValue) and label map SEGs are read; segments coded or labelled as calcification are
    used when present, else all segments.
    """
    if not is_segmentation(ds):
        raise PlaidInputError(f"not a DICOM Segmentation (SOP class {ds.get('SOPClassUID')})")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if (rows, columns) != tuple(shape):
        raise LabelShapeError(f"segmentation frames are {rows}x{columns}; image is {shape[0]}x{shape[1]}")
    try:
        frames = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise PlaidInputError(f"cannot decode segmentation frames ({syntax}; {type(exc).__name__}: {exc})") from exc
    frames = frames.reshape(-1, rows, columns)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    label_map = str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_SOP
    wanted = _calcification_segments(ds)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_source = _frame_source(shared[0]) if shared else None
    only_image = referenced_instances(ds) == {sop_instance_uid}
    mask = np.zeros((rows, columns), dtype=bool)
    matched = 0
    for index, frame in enumerate(frames):
        group = per_frame[index] if index < len(per_frame) else Dataset()
        source = _frame_source(group) or shared_source
        if source != sop_instance_uid and not (source is None and only_image):
            continue
        matched += 1
        if label_map:
            mask |= np.isin(frame, list(wanted))
            continue
        identification = group.get("SegmentIdentificationSequence") or (
            shared[0].get("SegmentIdentificationSequence") if shared else None) or []
        number = int(identification[0].ReferencedSegmentNumber) if identification else 1
        if number not in wanted:
            continue
        if str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
            mask |= frame > int(ds.get("MaximumFractionalValue", 255)) / 2
        else:
            mask |= frame != 0
    if not matched:
        raise PlaidInputError(f"segmentation {ds.get('SOPInstanceUID')} has no frame for image {sop_instance_uid}")
    return mask.astype(np.uint8)

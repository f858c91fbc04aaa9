"""PLAID's positive patches as a TID 1500 Measurement Report (highdicom Comprehensive 3D SR) OHIF can track.

One measurement group (TID 1501) per positive patch, written the way OHIF's own rectangle measurements are,
so OHIF's measurement tracking turns each into an editable RectangleROI:

- tracking identifier ``Cornerstone3DTools@^0.1.0:RectangleROI`` (how OHIF 3.x picks the tool that edits it)
  and a tracking UID;
- finding "calcification", and a comment naming the patch and its probability (OHIF's label for the box);
- the patch probability as a NUM in percent (UCUM ``%``: OHIF prints a value's unit code after it, so the
  dimensionless UCUM ``1`` read as a stray "1"), with the patch box as a closed 2-D POLYLINE (SCOORD, image
  pixel coordinates) *inferred from* it: OHIF reads a measurement's region under its measured value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import plaid
from plaid.pacs.codes import CALCIFICATION, PERCENT, PROBABILITY, UNILATERAL_MAMMOGRAM
from plaid.pacs.geometry import with_plane_geometry
from plaid.pacs.seg import MANUFACTURER, SeriesInfo, box_label

logger = logging.getLogger(__name__)

MEASUREMENT_GROUP = "125007"
# The tracking identifier OHIF 3.x writes for (and hydrates into) its rectangle tool.
RECTANGLE_TRACKING_IDENTIFIER = "Cornerstone3DTools@^0.1.0:RectangleROI"


def patch_polyline(box: list[int] | tuple[int, int, int, int]) -> np.ndarray:
    """A closed polyline (column, row pairs) around a (top, left, bottom, right) pixel box."""
    top, left, bottom, right = (float(v) for v in box)
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]], dtype=float)


def _patch_group(source: Dataset, entry: dict[str, Any]) -> Any:
    """One TID 1501 group: tracking, finding, comment and the probability with the box it was inferred from."""
    import highdicom as hd

    probability = float(entry["probability"])
    region = hd.sr.ScoordContentItem(name=codes.DCM.ImageRegion, graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                     graphic_data=patch_polyline(entry["box"]),
                                     relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM)
    region.ContentSequence = Sequence([hd.sr.SourceImageForRegion.from_source_image(source)])
    measurement = hd.sr.Measurement(name=PROBABILITY, value=round(100.0 * probability, 4), unit=PERCENT)
    number = measurement[0]
    number.ContentSequence = Sequence([*number.get("ContentSequence", []), region])
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=RECTANGLE_TRACKING_IDENTIFIER)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(tracking_identifier=tracking, finding_type=CALCIFICATION,
                                                        measurements=[measurement])
    comment = hd.sr.TextContentItem(name=codes.DCM.Comment, value=box_label(int(entry["patch"]), probability),
                                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    group[0].ContentSequence.append(comment)
    return group


def write_sr(source: Dataset, positives: list[dict[str, Any]], series: SeriesInfo,
             observer: str = "PLAID calcification model") -> Dataset:
    """A Comprehensive 3D SR holding one tracked box with its probability per entry of ``positives``.

    ``positives`` are the infer result's entries: ``{"patch": index, "box": [t, l, b, r], "probability": p}``.
    """
    import highdicom as hd

    observer_context = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=observer, manufacturer_name=MANUFACTURER, model_name=plaid.__version__),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer_context),
        procedure_reported=UNILATERAL_MAMMOGRAM,
        imaging_measurements=[_patch_group(source, entry) for entry in positives],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[with_plane_geometry(source)],  # the header with its empty Type-2 attributes present
        content=report,
        series_instance_uid=series.uid(),
        series_number=series.number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=series.description,
        is_complete=True,
        is_final=False,
    )


@dataclass(frozen=True)
class ReportedRegion:
    """One region read back from a measurement report: box (top, left, bottom, right), probability, image."""

    box: tuple[int, int, int, int]
    probability: float | None
    sop_instance_uid: str
    graphic_type: str


def read_sr_regions(ds: Dataset) -> list[ReportedRegion]:
    """Every TID 1500 measurement group's 2-D region and probability, read with pydicom alone.

    The region is the SCOORD under the group's probability (as PLAID writes it) or directly in the group
    (TID 1410); a probability in percent is returned as a fraction."""
    regions = []
    for group in _walk(ds):
        if _concept(group) != MEASUREMENT_GROUP:
            continue
        items = list(group.get("ContentSequence", []))
        number = next((item for item in items if item.ValueType == "NUM" and _concept(item) == PROBABILITY.value),
                      None)
        nested = list(number.get("ContentSequence", [])) if number is not None else []
        scoord = next((item for item in [*nested, *items] if item.ValueType == "SCOORD"), None)
        if scoord is None:
            continue
        points = [float(v) for v in scoord.GraphicData]
        columns, rows = points[0::2], points[1::2]
        image = next(item for item in scoord.ContentSequence if item.ValueType == "IMAGE")
        probability = None
        if number is not None:
            value = number.MeasuredValueSequence[0]
            scale = 0.01 if value.MeasurementUnitsCodeSequence[0].CodeValue == PERCENT.value else 1.0
            probability = float(value.NumericValue) * scale
        regions.append(ReportedRegion(
            box=(round(min(rows)), round(min(columns)), round(max(rows)), round(max(columns))),
            probability=probability, sop_instance_uid=str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID),
            graphic_type=str(scoord.GraphicType)))
    return regions


def _concept(item: Dataset) -> str:
    """The code value of a content item's concept name ('' when it has none)."""
    names = item.get("ConceptNameCodeSequence") or []
    return str(names[0].CodeValue) if names else ""


def _walk(item: Dataset):
    """Depth-first content items of an SR tree."""
    for child in item.get("ContentSequence", []):
        yield child
        yield from _walk(child)

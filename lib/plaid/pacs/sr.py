"""PLAID's positive patches as a TID 1500 Measurement Report (highdicom Comprehensive 3D SR).

One planar ROI group per positive patch: its box as a closed 2-D POLYLINE (SCOORD, image pixel
coordinates) on the mammogram, finding "calcification", and the patch probability as a measurement.
OHIF's SR viewer draws these regions as boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import plaid
from plaid.pacs.codes import CALCIFICATION, NO_UNITS, PROBABILITY, UNILATERAL_MAMMOGRAM
from plaid.pacs.geometry import with_plane_geometry
from plaid.pacs.seg import MANUFACTURER, SeriesInfo

logger = logging.getLogger(__name__)

MEASUREMENT_GROUP = "125007"


def patch_polyline(box: list[int] | tuple[int, int, int, int]):
    """A closed polyline (column, row pairs) around a (top, left, bottom, right) pixel box."""
    import numpy as np

    top, left, bottom, right = (float(v) for v in box)
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]], dtype=float)


def write_sr(source: Dataset, positives: list[dict[str, Any]], series: SeriesInfo,
             observer: str = "PLAID calcification model") -> Dataset:
    """A Comprehensive 3D SR holding one region (box + probability) per entry of ``positives``.

    ``positives`` are the infer result's entries: ``{"patch": index, "box": [t, l, b, r], "probability": p}``.
    """
    import highdicom as hd

    image = hd.sr.SourceImageForRegion.from_source_image(source)
    groups = []
    for entry in positives:
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                   graphic_data=patch_polyline(entry["box"]), source_image=image)
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"PLAID patch {int(entry['patch'])}")
        probability = hd.sr.Measurement(name=PROBABILITY, value=float(entry["probability"]), unit=NO_UNITS)
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=region, finding_type=CALCIFICATION,
            measurements=[probability]))
    observer_context = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=observer, manufacturer_name=MANUFACTURER, model_name=plaid.__version__),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer_context),
        procedure_reported=UNILATERAL_MAMMOGRAM,
        imaging_measurements=groups,
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
    """Every TID 1500 measurement group's 2-D region and probability, read with pydicom alone."""
    regions = []
    for group in _walk(ds):
        if _concept(group) != MEASUREMENT_GROUP:
            continue
        scoord = next((item for item in group.get("ContentSequence", []) if item.ValueType == "SCOORD"), None)
        number = next((item for item in group.get("ContentSequence", [])
                       if item.ValueType == "NUM" and _concept(item) == PROBABILITY.value), None)
        if scoord is None:
            continue
        points = [float(v) for v in scoord.GraphicData]
        columns, rows = points[0::2], points[1::2]
        image = next(item for item in scoord.ContentSequence if item.ValueType == "IMAGE")
        probability = float(number.MeasuredValueSequence[0].NumericValue) if number is not None else None
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

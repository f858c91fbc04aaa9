"""DICOM SEG and SR writing and reading for 2-D mammograms, without a PACS."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs_helpers import ohif_label_map_seg

from plaid.errors import LabelShapeError, PlaidInputError
from plaid.io.dicom import write_dicom_mammogram
from plaid.pacs.codes import BREAST, CALCIFICATION, MORPHOLOGICALLY_ABNORMAL_STRUCTURE
from plaid.pacs.seg import SeriesInfo, is_automatic, read_seg_mask, referenced_instances, write_seg
from plaid.pacs.sr import read_sr_regions, write_sr


@pytest.fixture
def mammogram(tmp_path: Path, rng: np.random.Generator) -> pydicom.Dataset:
    """A 12-bit 300x250 MG image with no plane geometry and no Type-2 study attributes beyond the writer's."""
    path = write_dicom_mammogram(tmp_path / "mg.dcm", rng.integers(0, 4096, (300, 250)), pixel_spacing_mm=0.07,
                                 laterality="R", view="MLO")
    ds = pydicom.dcmread(path)
    assert "ImageOrientationPatient" not in ds and "PatientBirthDate" not in ds
    return ds


def _round_trip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_seg_matches_mask_and_carries_plane_geometry(mammogram: pydicom.Dataset, rng: np.random.Generator) -> None:
    mask = (rng.random((300, 250)) > 0.97).astype(np.uint8)
    seg = _round_trip(write_seg(mammogram, mask, SeriesInfo("test")))
    assert (seg.Rows, seg.Columns, int(seg.NumberOfFrames)) == (300, 250, 1)
    assert np.array_equal(read_seg_mask(seg, str(mammogram.SOPInstanceUID), (300, 250)), mask)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [0.07, 0.07]
    assert float(shared.PixelMeasuresSequence[0].SliceThickness) == 1.0
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == [0, 0, 0]
    assert seg.FrameOfReferenceUID and seg.StudyInstanceUID == mammogram.StudyInstanceUID
    for keyword in ("PatientBirthDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        assert keyword in seg
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Calcification"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == MORPHOLOGICALLY_ABNORMAL_STRUCTURE.value
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == CALCIFICATION.value == "18115005"
    assert segment.AnatomicRegionSequence[0].CodeValue == BREAST.value
    assert referenced_instances(seg) == {str(mammogram.SOPInstanceUID)} and is_automatic(seg)


def test_seg_holds_one_named_segment_per_given_mask(mammogram: pydicom.Dataset) -> None:
    layers = np.zeros((2, 300, 250), dtype=np.uint8)
    layers[0, 10:60, 20:80] = 1
    layers[1, 40:90, 60:120] = 1  # overlapping the first
    labels = ["Calcification patch 1: probability 0.91", "Calcification patch 2: probability 0.55"]
    seg = _round_trip(write_seg(mammogram, layers, SeriesInfo("test"), labels=labels))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == labels
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2]
    assert all(s.SegmentedPropertyTypeCodeSequence[0].CodeValue == CALCIFICATION.value for s in seg.SegmentSequence)
    assert np.array_equal(read_seg_mask(seg, str(mammogram.SOPInstanceUID), (300, 250)), layers.any(axis=0))
    with pytest.raises(LabelShapeError, match="labels"):
        write_seg(mammogram, layers, SeriesInfo("test"), labels=labels[:1])


def test_ohif_label_map_seg_is_read_by_referenced_instance(mammogram: pydicom.Dataset) -> None:
    mask = np.zeros((300, 250), dtype=np.uint8)
    mask[20:40, 100:180] = 1
    seg = _round_trip(ohif_label_map_seg(mammogram, mask))
    assert seg.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless and not is_automatic(seg)
    assert np.array_equal(read_seg_mask(seg, str(mammogram.SOPInstanceUID), (300, 250)), mask)
    with pytest.raises(PlaidInputError, match="no frame for image"):
        read_seg_mask(seg, "1.2.3.4", (300, 250))
    with pytest.raises(LabelShapeError):
        read_seg_mask(seg, str(mammogram.SOPInstanceUID), (300, 251))
    with pytest.raises(PlaidInputError, match="not a DICOM Segmentation"):
        read_seg_mask(mammogram, str(mammogram.SOPInstanceUID), (300, 250))


def test_seg_refuses_a_mask_of_another_shape(mammogram: pydicom.Dataset) -> None:
    with pytest.raises(LabelShapeError):
        write_seg(mammogram, np.zeros((250, 300), dtype=np.uint8), SeriesInfo("test"))


def test_sr_holds_one_box_and_probability_per_positive_patch(mammogram: pydicom.Dataset) -> None:
    positives = [{"patch": 0, "box": [0, 0, 224, 224], "probability": 0.91},
                 {"patch": 1, "box": [0, 224, 224, 250], "probability": 0.62}]
    sr = _round_trip(write_sr(mammogram, positives, SeriesInfo("report")))
    assert sr.Modality == "SR" and sr.StudyInstanceUID == mammogram.StudyInstanceUID
    regions = read_sr_regions(sr)
    assert [r.box for r in regions] == [(0, 0, 224, 224), (0, 224, 224, 250)]
    assert [r.probability for r in regions] == pytest.approx([0.91, 0.62])
    assert {r.graphic_type for r in regions} == {"POLYLINE"}
    assert {r.sop_instance_uid for r in regions} == {str(mammogram.SOPInstanceUID)}
    assert read_sr_regions(_round_trip(write_sr(mammogram, [], SeriesInfo("empty")))) == []
    # laid out as OHIF's measurement tracking reads a rectangle: the box under the value, a label, no unit "1"
    (measurements,) = [item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
    group = measurements.ContentSequence[0].ContentSequence
    number = next(item for item in group if item.ValueType == "NUM")
    assert [item.ValueType for item in number.ContentSequence] == ["SCOORD"]
    assert number.ContentSequence[0].RelationshipType == "INFERRED FROM"
    assert number.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
    texts = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue for item in group if item.ValueType == "TEXT"}
    assert texts == {"Tracking Identifier": "Cornerstone3DTools@^0.1.0:RectangleROI",
                     "Comment": "Calcification patch 0: probability 0.91"}

"""Test data for the PACS tests: non-MG and multi-frame instances, and a label map SEG written as OHIF does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless, generate_uid

from plaid.pacs.seg import LABEL_MAP_SEGMENTATION_SOP, SeriesInfo, write_seg

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _new_uids(ds: Dataset, study: bool = True) -> Dataset:
    if study:
        ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def write_ct_copy(mg_path: Path, out: Path) -> Path:
    """The same pixels stored as a CT image in a new study."""
    ds = _new_uids(pydicom.dcmread(mg_path))
    ds.Modality = "CT"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.save_as(out, write_like_original=False)
    return out


def write_multiframe_mg(mg_path: Path, out: Path, frames: int = 2) -> Path:
    """An MG instance holding ``frames`` copies of the image (a tomosynthesis-like multi-frame object)."""
    ds = _new_uids(pydicom.dcmread(mg_path))
    ds.NumberOfFrames = frames
    ds.PixelData = ds.PixelData * frames
    ds.save_as(out, write_like_original=False)
    return out


def ohif_label_map_seg(source: Dataset, mask: np.ndarray, segment_number: int = 1) -> Dataset:
    """A label map SEG (SOP class 1.2.840.10008.5.1.4.1.1.66.7, RLE Lossless, 8-bit segment numbers, MANUAL)
    referencing ``source`` frame by frame, laid out like OHIF's export."""
    seg = write_seg(source, mask, SeriesInfo("OHIF labelmap", number=1), algorithm_type="MANUAL")
    buffer = io.BytesIO()
    seg.save_as(buffer)  # a plain pydicom dataset from here on
    seg = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    seg.SOPClassUID = seg.file_meta.MediaStorageSOPClassUID = LABEL_MAP_SEGMENTATION_SOP
    seg.SegmentationType = "LABELMAP"
    seg.Manufacturer = "OHIF"
    for group in seg.PerFrameFunctionalGroupsSequence:
        del group.SegmentIdentificationSequence
    for keyword in ("MaximumFractionalValue", "SegmentationFractionalType"):
        if keyword in seg:
            delattr(seg, keyword)
    seg.BitsAllocated, seg.BitsStored, seg.HighBit = 8, 8, 7
    seg.PhotometricInterpretation = "MONOCHROME2"
    labels = ((mask != 0) * segment_number).astype(np.uint8)
    seg.compress(RLELossless, labels)
    return seg

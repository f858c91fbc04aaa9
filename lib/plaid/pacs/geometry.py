"""Plane geometry for 2-D mammograms, which carry none, so that SEG readers (OHIF, highdicom) place frames.

A Digital Mammography image has no Image Orientation / Position (Patient) and no Frame of Reference.
`with_plane_geometry` returns a copy of the source header with an identity orientation (1,0,0,0,1,0),
position 0,0,0, a new FrameOfReferenceUID, SliceThickness 1 and PixelSpacing (from ImagerPixelSpacing
when needed); the Type-2 attributes a derived object must carry are added empty when absent.
"""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

IDENTITY_ORIENTATION = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
ORIGIN = [0.0, 0.0, 0.0]
TYPE2_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber")


def with_plane_geometry(source: Dataset) -> Dataset:
    """A copy of ``source`` (without pixel data) with plane geometry and the Type-2 study attributes."""
    patched = Dataset()
    patched.file_meta = copy.deepcopy(getattr(source, "file_meta", Dataset()))
    for element in source:
        if element.keyword != "PixelData":
            patched.add(copy.deepcopy(element))
    if "ImageOrientationPatient" not in patched:
        patched.ImageOrientationPatient = IDENTITY_ORIENTATION
    if "ImagePositionPatient" not in patched:
        patched.ImagePositionPatient = ORIGIN
    if "FrameOfReferenceUID" not in patched:
        patched.FrameOfReferenceUID = generate_uid()
    if "SliceThickness" not in patched or patched.SliceThickness in (None, ""):
        patched.SliceThickness = 1.0
    if "PixelSpacing" not in patched:
        patched.PixelSpacing = list(source.get("ImagerPixelSpacing") or [1.0, 1.0])
    for keyword in TYPE2_ATTRIBUTES:
        if keyword not in patched:
            setattr(patched, keyword, None)
    return patched

"""DICOM MG reading: LUTs, MONOCHROME1 inversion, bit depth, metadata, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from plaid.errors import ImageReadError
from plaid.io.dicom import parse_age, write_dicom_mammogram
from plaid.io.images import read_mammogram


def _ramp(height: int = 240, width: int = 260, bits: int = 12) -> np.ndarray:
    values = np.linspace(0, 2**bits - 1, height * width).reshape(height, width)
    return np.rint(values).astype(np.uint16)


def test_monochrome2_round_trip_keeps_12_bit_values_and_metadata(tmp_path: Path) -> None:
    pixels = _ramp()
    path = write_dicom_mammogram(tmp_path / "a.dcm", pixels, laterality="L", view="MLO", patient_id="P7",
                                 age_years=52, pixel_spacing_mm=0.07)
    image = read_mammogram(path)
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))
    assert len(np.unique(image.pixels)) > 256  # no 8-bit round trip
    meta = image.meta
    assert (meta.laterality, meta.view, meta.patient_id) == ("L", "MLO", "P7")
    assert meta.age_years == pytest.approx(52)
    assert meta.pixel_spacing_mm == pytest.approx((0.07, 0.07))
    assert meta.photometric == "MONOCHROME2" and meta.bits_stored == 12


@pytest.mark.parametrize(("side", "view", "orientation"), [("R", "CC", ["P", "L"]), ("L", "CC", ["A", "R"]),
                                                          ("R", "MLO", ["P", "F"]), ("L", "MLO", ["A", "F"])])
def test_written_film_carries_orientation_and_descriptions(tmp_path: Path, side: str, view: str,
                                                           orientation: list[str]) -> None:
    path = write_dicom_mammogram(tmp_path / "o.dcm", _ramp(), laterality=side, view=view, patient_id="SYN0042")
    ds = pydicom.dcmread(path)
    assert list(ds.PatientOrientation) == orientation
    assert (ds.ImageLaterality, ds.ViewPosition, ds.SeriesDescription) == (side, view, f"{side} {view}")
    assert ds.StudyDescription and ds.AccessionNumber == f"SYN0042{side}{view}"


def test_monochrome1_is_inverted_back_to_bright_dense(tmp_path: Path) -> None:
    pixels = _ramp()
    path = write_dicom_mammogram(tmp_path / "m1.dcm", pixels, monochrome1=True)
    stored = pydicom.dcmread(path).pixel_array
    assert stored[0, 0] == 4095 and stored[-1, -1] == 0  # file really holds inverted values
    image = read_mammogram(path)
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))
    assert image.meta.photometric == "MONOCHROME1"


def test_voi_window_is_applied(tmp_path: Path) -> None:
    pixels = _ramp()
    path = write_dicom_mammogram(tmp_path / "w.dcm", pixels, window=(2048, 1024))
    image = read_mammogram(path)
    below, above = pixels < 1536, pixels > 2560
    assert np.all(image.pixels[below] == 0)
    assert np.all(image.pixels[above] == 4095)
    middle = (pixels > 1600) & (pixels < 2500)
    expected = ((pixels[middle] - 2047.5) / 1023 + 0.5) * 4095  # DICOM linear window formula
    np.testing.assert_allclose(image.pixels[middle], expected, atol=1.0)
    assert image.meta.extra["voi_applied"] is True


def test_voi_lut_sequence_and_rescale_are_applied(tmp_path: Path) -> None:
    pixels = _ramp(bits=12)
    path = write_dicom_mammogram(tmp_path / "lut.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = 2, 10
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = (np.arange(4096, dtype=np.uint16) * 16).tolist()
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = pydicom.Sequence([lut])
    ds.save_as(path)
    image = read_mammogram(path)
    rescaled = pixels.astype(np.int64) * 2 + 10
    expected = np.minimum(rescaled, 4095) * 16
    np.testing.assert_array_equal(image.pixels, expected.astype(np.float32))
    assert image.pixels.max() > 60000  # 16-bit output preserved


def test_jpeg2000_lossless_is_decoded_when_handler_installed(tmp_path: Path) -> None:
    openjpeg = pytest.importorskip("openjpeg")
    pixels = _ramp()
    path = write_dicom_mammogram(tmp_path / "plain.dcm", pixels)
    ds = pydicom.dcmread(path)
    ds.PixelData = pydicom.encaps.encapsulate([openjpeg.encode(pixels, bits_stored=12)])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds["PixelData"].is_undefined_length = True
    ds.save_as(tmp_path / "j2k.dcm")
    image = read_mammogram(tmp_path / "j2k.dcm")
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))


def test_truncated_dicom_raises_typed_error_naming_file(tmp_path: Path) -> None:
    path = write_dicom_mammogram(tmp_path / "whole.dcm", _ramp())
    data = path.read_bytes()
    broken = tmp_path / "truncated.dcm"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated.dcm"):
        read_mammogram(broken)


def test_text_file_renamed_dcm_raises_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("this is a radiology report, not an image\n" * 20)
    with pytest.raises(ImageReadError, match="notes.dcm"):
        read_mammogram(path)


@pytest.mark.parametrize(("text", "years"), [("052Y", 52.0), ("006M", 0.5), ("", None), ("abc", None)])
def test_parse_age(text: str, years: float | None) -> None:
    assert parse_age(text) == (pytest.approx(years) if years is not None else None)

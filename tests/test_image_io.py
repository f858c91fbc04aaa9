"""Raster reading at full bit depth, and clear typed errors for bad images and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from plaid.errors import ImageReadError, ImageShapeError, ImageTooSmallError, LabelShapeError
from plaid.io.images import read_mammogram, validate_pixels
from plaid.io.labels import read_label_mask, write_label_image


def test_16_bit_png_tiff_and_pgm_keep_values(tmp_path: Path, rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 65535, (300, 260), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    Image.fromarray(pixels).save(tmp_path / "a.pgm")
    for name in ("a.png", "a.tif", "a.pgm"):
        image = read_mammogram(tmp_path / name)
        np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32), err_msg=name)


def test_three_dimensional_array_is_rejected(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((4, 300, 300), dtype=np.uint16), photometric="minisblack")
    with pytest.raises(ImageShapeError, match="stack.tif"):
        read_mammogram(tmp_path / "stack.tif")


def test_image_smaller_than_patch_is_rejected(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((100, 500), dtype=np.uint16)).save(tmp_path / "small.png")
    with pytest.raises(ImageTooSmallError, match="small.png"):
        read_mammogram(tmp_path / "small.png", min_size=224)


def test_non_image_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not a png")
    with pytest.raises(ImageReadError, match="fake.png"):
        read_mammogram(tmp_path / "fake.png")
    with pytest.raises(ImageReadError, match="absent.png"):
        read_mammogram(tmp_path / "absent.png")
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ImageReadError, match="unsupported"):
        read_mammogram(tmp_path / "table.csv")
    with pytest.raises(ImageShapeError):
        validate_pixels(np.zeros((0, 10)))


def test_mask_of_wrong_shape_names_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((200, 200), dtype=np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(LabelShapeError, match="mask.png"):
        read_label_mask(tmp_path / "mask.png", (448, 448))


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".png"])
def test_label_write_read_round_trip(tmp_path: Path, suffix: str) -> None:
    mask = np.zeros((300, 260), dtype=np.uint8)
    mask[10:50, 200:240] = 1
    Image.fromarray(np.zeros((300, 260), dtype=np.uint16)).save(tmp_path / "ref.png")
    out = write_label_image(tmp_path / f"out{suffix}", mask, reference=tmp_path / "ref.png")
    np.testing.assert_array_equal(read_label_mask(out, (300, 260)), mask)


def test_label_copies_dicom_geometry_from_header(tmp_path: Path) -> None:
    import itk

    from plaid.io.dicom import write_dicom_mammogram

    reference = write_dicom_mammogram(tmp_path / "ref.dcm", np.zeros((300, 260)), pixel_spacing_mm=0.07)
    mask = np.zeros((300, 260), dtype=np.uint8)
    mask[:10, :20] = 1
    written = itk.imread(str(write_label_image(tmp_path / "out.nrrd", mask, reference=reference)))
    image = itk.imread(str(reference))
    assert tuple(itk.size(written)) == tuple(itk.size(image))
    np.testing.assert_allclose(np.array(written.GetSpacing())[:2], [0.07, 0.07])
    np.testing.assert_allclose(np.array(written.GetOrigin()), np.array(image.GetOrigin()))
    np.testing.assert_array_equal(read_label_mask(tmp_path / "out.nrrd", (300, 260)), mask)

"""Read 2-D mammograms (DICOM MG, 16-bit PNG, TIFF, PGM) at full resolution and full bit depth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from plaid.errors import ImageReadError, ImageShapeError, ImageTooSmallError
from plaid.io.dicom import read_dicom_mammogram
from plaid.io.mammogram import ImageMeta, Mammogram

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".pnm")
IMAGE_SUFFIXES = DICOM_SUFFIXES + RASTER_SUFFIXES


def is_dicom_file(path: Path) -> bool:
    """True when the file has a DICOM suffix or the DICM preamble marker."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_mammogram(path: str | Path, min_size: int | None = None, keep_integers: bool = False) -> Mammogram:
    """Read a mammogram file into a `Mammogram`, validating it is a non-empty 2-D image.

    ``min_size`` (usually the patch size) rejects images smaller than one patch. With ``keep_integers`` a
    PNG/TIFF/PGM keeps the decoder's 8- or 16-bit integers (no full-size float copy; `plaid.patches.prepared`
    normalises them through a lookup table); otherwise pixels are float32.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("file does not exist", path)
    if is_dicom_file(path):
        image = read_dicom_mammogram(path)
    elif path.suffix.lower() in RASTER_SUFFIXES:
        image = _read_raster(path, keep_integers)
    else:
        raise ImageReadError(
            f"unsupported file type {path.suffix!r}; expected one of {', '.join(IMAGE_SUFFIXES)}", path
        )
    validate_pixels(image.pixels, path, min_size=min_size)
    return image


def validate_pixels(pixels: np.ndarray, path: str | Path | None = None, min_size: int | None = None) -> None:
    """Raise a typed error unless ``pixels`` is a non-empty 2-D image at least ``min_size`` on each side."""
    if pixels.ndim != 2:
        raise ImageShapeError(f"expected a 2-D grayscale image, got an array of shape {pixels.shape}", path)
    if pixels.size == 0:
        raise ImageShapeError("image is empty (zero pixels)", path)
    if min_size is not None and min(pixels.shape) < min_size:
        raise ImageTooSmallError(
            f"image of {pixels.shape[0]}x{pixels.shape[1]} pixels is smaller than one {min_size}x{min_size} patch",
            path,
        )


def _read_raster(path: Path, keep_integers: bool = False) -> Mammogram:
    """Read PNG / TIFF / PGM without any 8-bit conversion (float32, or the file's uint8/uint16 when asked)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(str(path))
        else:
            from PIL import Image

            with Image.open(path) as handle:
                handle.load()
                if handle.mode in ("RGB", "RGBA", "LA", "P"):
                    logger.warning("%s: colour image (%s) converted to grayscale", path, handle.mode)
                    handle = handle.convert("L")
                array = np.asarray(handle)
    except Exception as exc:  # every decoder raises its own type; report them all the same way
        raise ImageReadError(f"cannot decode image ({type(exc).__name__}: {exc})", path) from exc
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and suffix in (".tif", ".tiff"):
        logger.warning("%s: colour TIFF converted to grayscale by averaging RGB", path)
        array = array[..., :3].mean(axis=-1)
    bits = int(array.dtype.itemsize * 8) if np.issubdtype(array.dtype, np.integer) else None
    meta = ImageMeta(path=str(path), file_format=suffix.lstrip("."), photometric="MONOCHROME2", bits_stored=bits)
    if keep_integers and array.dtype in (np.uint8, np.uint16):
        return Mammogram(pixels=array, meta=meta)
    return Mammogram(pixels=array.astype(np.float32, copy=False), meta=meta)


LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.95


def intensity_window(pixels: np.ndarray, low_percentile: float = LOW_PERCENTILE,
                     high_percentile: float = HIGH_PERCENTILE) -> tuple[np.float32, np.float32]:
    """The (low, high) intensities `normalise_intensity` maps to 0 and 1: percentiles of a ~512x512 subsample."""
    sample = pixels[:: max(1, pixels.shape[0] // 512), :: max(1, pixels.shape[1] // 512)]
    low, high = np.percentile(sample.astype(np.float32), [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    return np.float32(low), np.float32(high - low)


def normalise_intensity(
    pixels: np.ndarray, low_percentile: float = LOW_PERCENTILE, high_percentile: float = HIGH_PERCENTILE
) -> np.ndarray:
    """Map intensities to [0, 1] between two image percentiles (clipped); keeps float precision."""
    low, span = intensity_window(pixels, low_percentile, high_percentile)
    scaled = (pixels.astype(np.float32) - low) / span
    return np.clip(scaled, 0.0, 1.0, out=scaled)

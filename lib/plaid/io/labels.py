"""Read and write full-size annotation masks (PNG / TIFF / NRRD / NIfTI) as 2-D arrays."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plaid.errors import ImageReadError, LabelShapeError

logger = logging.getLogger(__name__)

LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".nrrd", ".nii.gz", ".nii", ".mha", ".pgm")


def label_suffix(path: str | Path) -> str:
    """The file's suffix, treating '.nii.gz' as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def check_mask_shape(mask: np.ndarray, image_shape: tuple[int, int], path: str | Path | None = None) -> np.ndarray:
    """Return ``mask`` as a 2-D array, raising `LabelShapeError` if it does not match ``image_shape``."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and 1 in mask.shape:
        mask = mask.reshape([s for s in mask.shape if s != 1] or [1])
    if mask.ndim != 2 or tuple(mask.shape) != tuple(image_shape):
        raise LabelShapeError(
            f"annotation of shape {tuple(mask.shape)} does not match image of shape {tuple(image_shape)}", path
        )
    return mask


def read_label_mask(path: str | Path, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an annotation mask as a 2-D uint8 array (non-zero = calcification).

    Volumes saved by Slicer or MONAI Label for a 2-D image carry a singleton slice axis, which is
    dropped. With ``image_shape`` the mask must match it, else `LabelShapeError` names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("label file does not exist", path)
    suffix = label_suffix(path)
    try:
        if suffix in (".png", ".pgm"):
            from PIL import Image

            with Image.open(path) as handle:
                array = np.asarray(handle)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(str(path))
        elif suffix in (".nrrd", ".nii.gz", ".nii", ".mha"):
            import itk

            array = itk.array_from_image(itk.imread(str(path)))
        else:
            raise ImageReadError(f"unsupported label file type {suffix!r}", path)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"cannot decode label ({type(exc).__name__}: {exc})", path) from exc
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and suffix in (".png", ".tif", ".tiff"):
        array = array[..., :3].max(axis=-1)
    if array.ndim > 2:
        array = np.squeeze(array)
    if image_shape is not None:
        array = check_mask_shape(array, image_shape, path)
    return (array != 0).astype(np.uint8)


def write_label_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a 2-D mask as an 8-bit PNG with values 0/1."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask) != 0).astype(np.uint8)).save(path)
    return path


@dataclass(frozen=True)
class Geometry:
    """Physical layout of an image as ITK reads it (axis order x, y[, z])."""

    size: tuple[int, ...]
    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: np.ndarray


def read_geometry(reference: str | Path | None) -> Geometry | None:
    """The reference file's geometry from its header only (no pixel decoding), or None if ITK cannot read it."""
    if not reference:
        return None
    try:
        import itk

        image_io = itk.ImageIOFactory.CreateImageIO(str(reference), itk.CommonEnums.IOFileMode_ReadMode)
        if image_io is None:
            raise ValueError("no ITK reader for this file")
        image_io.SetFileName(str(reference))
        image_io.ReadImageInformation()
        dims = image_io.GetNumberOfDimensions()
        return Geometry(
            size=tuple(int(image_io.GetDimensions(i)) for i in range(dims)),
            origin=tuple(float(image_io.GetOrigin(i)) for i in range(dims)),
            spacing=tuple(float(image_io.GetSpacing(i)) for i in range(dims)),
            direction=np.array([[image_io.GetDirection(j)[i] for j in range(dims)] for i in range(dims)]),
        )
    except Exception:  # the label is still written, with default geometry
        logger.warning("cannot read geometry of %s with ITK; writing the result with unit spacing", reference)
        return None


def write_label_image(
    path: str | Path, array: np.ndarray, reference: str | Path | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Write a 2-D result (mask or probability map) as NRRD / NIfTI / PNG / TIFF with the image's geometry.

    For ITK formats the geometry (origin, spacing, direction, and a singleton slice axis if the reference
    has one) is copied from ``reference`` as ITK reads it, so Slicer overlays the result on the image.
    """
    import itk

    path = Path(path)
    array = np.ascontiguousarray(array)
    suffix = label_suffix(path)
    if suffix in (".png", ".tif", ".tiff"):
        if suffix == ".png":
            return write_label_png(path, array) if array.dtype != np.float32 else _write_float_tiff_as_png(path, array)
        import tifffile

        tifffile.imwrite(str(path), array)
        return path
    geometry = read_geometry(reference)
    if geometry is not None and len(geometry.size) == 3 and array.ndim == 2:
        array = array[np.newaxis]
    image = itk.image_from_array(array)
    if geometry is not None and geometry.size == tuple(int(v) for v in itk.size(image)):
        image.SetOrigin(geometry.origin)
        image.SetSpacing(geometry.spacing)
        image.SetDirection(itk.matrix_from_array(geometry.direction))
    elif spacing_mm is not None and array.ndim == 2:
        image.SetSpacing([float(spacing_mm[1]), float(spacing_mm[0])])
    path.parent.mkdir(parents=True, exist_ok=True)
    itk.imwrite(image, str(path), compression=True)
    return path


def _write_float_tiff_as_png(path: Path, array: np.ndarray) -> Path:
    """Probability maps in PNG are stored as 16-bit (probability x 65535)."""
    from PIL import Image

    Image.fromarray(np.rint(np.clip(array, 0, 1) * 65535).astype(np.uint16)).save(path)
    return path

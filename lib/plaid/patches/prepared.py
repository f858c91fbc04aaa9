"""Images prepared once for all patch work (normalised pixels, grid, tissue and labels), read ahead of use."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord
from plaid.io.images import ImageMeta, intensity_window, read_mammogram
from plaid.io.labels import read_label_mask
from plaid.options import Bounds, option
from plaid.patches.grid import DEFAULT_PATCH_SIZE, PatchGrid, grid_for, patch_view
from plaid.patches.labels import patch_labels_from_mask
from plaid.patches.prefetch import prefetched
from plaid.patches.sampling import PatchIndex
from plaid.patches.spacing import image_spacing, resample_image, resample_mask, target_shape
from plaid.patches.tissue import breast_mask_small, tissue_patches_from_small

logger = logging.getLogger(__name__)

UINT16_SCALE = 65535.0
PREPARE_WORKERS = 4
BAND_ROWS = 256  # rows normalised at a time: the float32 temporaries stay in cache
ResultT = TypeVar("ResultT")


# Limits on the patch options a client may ask for (checked by `plaid.train.config.TrainConfig.validate`).
MIN_PATCH_SIZE = 32  # the ResNet stem and four stride-2 stages need at least this many pixels
MAX_PATCH_SIZE = 2048
SPACING_RANGE_MM = (0.005, 5.0)


@dataclass(frozen=True)
class PatchSettings:
    """How an image is cut and which patches count (each field's help is its documentation)."""

    patch_size: int = option(DEFAULT_PATCH_SIZE, help="side of the square patches, in pixels of the image as tiled",
                             notes="64 pixels at 200 µm span 12.8 mm, near the paper's 15.7 mm (224 at 70 µm)",
                             bounds=Bounds(MIN_PATCH_SIZE, MAX_PATCH_SIZE))
    stride: int | None = option(None, help="step between patches in pixels; below `patch_size` the patches overlap "
                                "and each pixel takes its highest probability", shown_default="`patch_size`",
                                bounds=Bounds(1, MAX_PATCH_SIZE))
    min_overlap: float = option(0.0, help="a patch is calcified when the annotated share of its area is above this",
                                bounds=Bounds(0.0, 1.0))
    skip_background: bool = option(True, help="score and sample only the patches that touch the breast tissue mask")
    tissue_min_fraction: float = option(0.0, help="share of a patch that must be breast tissue for it to be "
                                        "scored (0: touching the tissue is enough)")
    target_spacing_mm: float | None = option(
        None, help="resample every image to this pixel spacing (mm) before tiling", bounds=Bounds(*SPACING_RANGE_MM),
        notes="Stored in the checkpoint: inference resamples alike and maps its results back to the original pixels")
    pixel_spacing_mm: float | None = option(None, help="pixel spacing (mm) assumed for images whose DICOM header and "
                                            "metadata give none", bounds=Bounds(*SPACING_RANGE_MM))

    def spacing_of(self, record: CaseRecord, meta: ImageMeta) -> float | None:
        """An image's pixel spacing: DICOM header, else the record's metadata, else ``pixel_spacing_mm``."""
        header = float(meta.pixel_spacing_mm[0]) if meta.pixel_spacing_mm else None
        return image_spacing(header, record.pixel_spacing_mm, self.pixel_spacing_mm)

    def working_shape(self, record: CaseRecord, meta: ImageMeta, shape: tuple[int, int]) -> tuple[int, int]:
        """The size the image is tiled at: resampled to ``target_spacing_mm`` when set, else its own."""
        return target_shape(shape, self.spacing_of(record, meta), self.target_spacing_mm)

    def working_spacing(self, record: CaseRecord, meta: ImageMeta) -> float | None:
        """The pixel spacing the image is tiled at: ``target_spacing_mm`` when it is resampled, else its own."""
        spacing = self.spacing_of(record, meta)
        return float(self.target_spacing_mm) if spacing and self.target_spacing_mm else spacing


def patch_settings_from_dict(values: Mapping[str, Any]) -> PatchSettings:
    """`PatchSettings` from a checkpoint's ``patch_settings`` dict: unknown keys ignored, missing keys default."""
    known = {item.name for item in fields(PatchSettings)}
    return PatchSettings(**{key: value for key, value in values.items() if key in known})


@dataclass
class PreparedImage:
    """One mammogram prepared once for all patch work (training, inference, evaluation).

    ``padded`` holds the [0, 1] intensities as uint16 (half the memory of float32), already padded to the
    grid, so every patch is an O(1) view of it. ``tissue`` flags the patches the app scores; ``labels``
    (when a mask was given) flags the calcified patches; ``label_mask`` keeps the full-size mask only
    when asked for (evaluation's region scores). ``source_shape`` is the file's own size when the image was
    resampled to a target spacing before tiling (results map back to it), else None. ``spacing_mm_tiled`` is
    the pixel spacing of the grid the patches were cut from (after any resampling), when known.
    """

    padded: np.ndarray
    grid: PatchGrid
    tissue: np.ndarray
    meta: ImageMeta
    record: CaseRecord | None = None
    labels: np.ndarray | None = None
    label_mask: np.ndarray | None = None
    source_shape: tuple[int, int] | None = None
    spacing_mm_tiled: float | None = None
    _view: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._view = patch_view(self.padded, self.grid)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the patch view (it would be copied patch by patch); it is rebuilt on load."""
        state = dict(self.__dict__)
        state.pop("_view", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width of the image (unpadded)."""
        return self.grid.height, self.grid.width

    @property
    def pixels(self) -> np.ndarray:
        """The unpadded [0, 1]-as-uint16 image (a view)."""
        return self.padded[: self.grid.height, : self.grid.width]

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        """Pixel spacing (row, column) in millimetres, when the file records it."""
        return self.meta.pixel_spacing_mm

    def patch_view(self, index: int) -> np.ndarray:
        """Patch ``index`` as a uint16 view (no copy)."""
        rows, cols = divmod(int(index), self.grid.shape[1])
        return self._view[rows, cols]

    def patch_stack(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored uint16 patches (65535 means 1) for the given grid indices, shape (K, patch, patch)."""
        indices = np.asarray(indices, dtype=np.int64)
        cols = self.grid.shape[1]
        return self._view[indices // cols, indices % cols]

    def patches(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Float32 patches in [0, 1] for the given grid indices, shape (K, patch, patch)."""
        return np.multiply(self.patch_stack(indices), np.float32(1.0 / UINT16_SCALE), dtype=np.float32)

    def eligible_negatives(self) -> np.ndarray:
        """Patches that may be drawn as negatives: tissue patches (or all when skipping is off)."""
        return self.tissue


def _unit_uint16(values: np.ndarray, low: np.float32, span: np.float32, out: np.ndarray) -> None:
    """``out`` = round(65535 * clip((values - low) / span, 0, 1)), computed in float32."""
    unit = values.astype(np.float32)
    np.subtract(unit, low, out=unit)
    np.divide(unit, span, out=unit)
    np.clip(unit, 0.0, 1.0, out=unit)
    np.multiply(unit, np.float32(UINT16_SCALE), out=unit)
    np.rint(unit, out=unit)
    out[...] = unit


def normalise_into(pixels: np.ndarray, out: np.ndarray) -> None:
    """Write the [0, 1]-as-uint16 image (`plaid.io.images.normalise_intensity` scaled to 65535 and rounded)
    into ``out`` (same shape; may be a view of a larger array). 8- and 16-bit integers go through a lookup
    table of every possible value (one gather); other types are converted band by band."""
    low, span = intensity_window(pixels)
    if pixels.dtype in (np.uint8, np.uint16):
        table = np.empty(np.iinfo(pixels.dtype).max + 1, dtype=np.uint16)
        _unit_uint16(np.arange(len(table), dtype=np.float32), low, span, table)
        for top in range(0, pixels.shape[0], BAND_ROWS):
            out[top : top + BAND_ROWS] = np.take(table, pixels[top : top + BAND_ROWS])
        return
    for top in range(0, pixels.shape[0], BAND_ROWS):
        _unit_uint16(pixels[top : top + BAND_ROWS], low, span, out[top : top + BAND_ROWS])


def to_unit_uint16(pixels: np.ndarray) -> np.ndarray:
    """Normalise to [0, 1] and store as uint16 (no 8-bit round trip)."""
    out = np.empty(pixels.shape, dtype=np.uint16)
    normalise_into(pixels, out)
    return out


def normalised_padded(pixels: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """The [0, 1]-as-uint16 image zero-padded to the grid, written once into its final array."""
    padded = np.zeros(grid.padded_shape(), dtype=np.uint16)
    normalise_into(pixels, padded[: grid.height, : grid.width])
    return padded


def prepare(
    pixels: np.ndarray,
    settings: PatchSettings,
    meta: ImageMeta | None = None,
    record: CaseRecord | None = None,
    mask: np.ndarray | None = None,
    keep_mask: bool = False,
) -> PreparedImage:
    """The one preparation step: normalise, lay the grid, flag tissue patches and (with ``mask``) label them.

    ``pixels`` are in the file's own units (float, or the file's 8/16-bit integers); ``mask`` (non-zero =
    calcification) has the image's shape. Every full-size pass reads the pixels as they came: the tissue
    mask works on a small copy, the normalised image is written straight into its padded array.
    """
    grid = grid_for(pixels, settings.patch_size, settings.stride)
    if settings.skip_background:
        tissue = tissue_patches_from_small(breast_mask_small(pixels), grid, settings.tissue_min_fraction)
    else:
        tissue = np.ones(len(grid), dtype=bool)
    labels = None
    if mask is not None:
        labels = patch_labels_from_mask(mask, grid, settings.min_overlap, record.label if record else None)
    return PreparedImage(
        padded=normalised_padded(pixels, grid), grid=grid, tissue=tissue, meta=meta or ImageMeta(),
        record=record, labels=labels, label_mask=np.asarray(mask) if keep_mask and mask is not None else None,
    )


def prepare_file(path: str | Path, settings: PatchSettings) -> PreparedImage:
    """Read an unlabelled mammogram file and prepare it."""
    image = read_mammogram(path, min_size=settings.patch_size, keep_integers=True)
    return prepare(image.pixels, settings, meta=image.meta)


def prepare_image(
    record: CaseRecord, settings: PatchSettings, with_label: bool = True, keep_mask: bool = False
) -> PreparedImage:
    """Read one case (and its mask when ``with_label``) and prepare it; fills the record's patient/age."""
    image = read_mammogram(record.image, min_size=settings.patch_size, keep_integers=True)
    shape = settings.working_shape(record, image.meta, image.shape)
    pixels = resample_image(image.pixels, shape)
    record.fill_from(image.meta)
    mask = None
    if with_label:
        if not record.label:
            raise PlaidInputError(f"image {record.image_id} has no annotation mask", record.image)
        mask = resample_mask(read_label_mask(record.label, image.shape), shape)
    prepared = prepare(pixels, settings, meta=image.meta, record=record, mask=mask, keep_mask=keep_mask)
    prepared.spacing_mm_tiled = settings.working_spacing(record, image.meta)
    if shape != image.shape:
        prepared.source_shape = image.shape
    return prepared


@dataclass
class Problem:
    """A case that could not be used, and why."""

    path: str
    message: str


def process_records(
    records: Sequence[CaseRecord],
    work: Callable[[Any], ResultT],
    on_error: str = "skip",
    progress: bool = False,
    description: str = "reading images",
    prepare: Callable[[CaseRecord], Any] | None = None,
    workers: int = 1,
) -> tuple[list[ResultT], list[Problem]]:
    """Apply ``work`` to every record; bad inputs are skipped with a warning (``on_error='skip'``) or stop
    the run ('stop'). Returns the results and the problems met.

    With ``prepare``, ``work`` receives ``prepare(record)``, computed ahead in ``workers`` background
    threads while ``work`` runs on the current record.
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    results: list[ResultT] = []
    problems: list[Problem] = []
    stream: Iterable[tuple[CaseRecord, Future[Any]]] | Iterable[CaseRecord]
    source = prefetched(records, prepare, workers, lookahead=2 * workers) if prepare is not None else None
    stream = source if source is not None else records
    if progress:
        from tqdm import tqdm

        stream = tqdm(stream, desc=description, unit="image", total=len(records))
    # closed here, in this thread, even when the loop stops early: a suspended prefetch left to the garbage
    # collector would shut its thread pool down in whichever thread the collection happens to run
    with contextlib.closing(source) if source is not None else contextlib.nullcontext():
        for entry in stream:
            record = entry[0] if prepare is not None else entry
            try:
                results.append(work(entry[1].result()) if prepare is not None else work(record))
            except PlaidInputError as exc:
                if on_error == "stop":
                    raise
                logger.warning("skipping %s", exc)
                problems.append(Problem(path=exc.path or record.image, message=str(exc)))
    return results, problems


def prepare_images(
    records: Sequence[CaseRecord],
    settings: PatchSettings,
    with_label: bool = True,
    on_error: str = "skip",
    progress: bool = False,
) -> tuple[list[PreparedImage], list[Problem]]:
    """Prepare many cases, several at a time on machines with the cores for it (skip or stop on bad input)."""
    return process_records(
        records, lambda image: image, on_error=on_error, progress=progress,
        prepare=lambda record: prepare_image(record, settings, with_label=with_label),
        workers=min(PREPARE_WORKERS, os.cpu_count() or 1),
    )


def patch_index_for(images: Sequence[PreparedImage]) -> PatchIndex:
    """The candidate-patch table over labelled images: all positives, tissue patches as negatives."""
    return PatchIndex.from_images(
        [image.labels for image in images], [image.eligible_negatives() for image in images]
    )

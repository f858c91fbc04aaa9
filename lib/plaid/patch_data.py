"""Images prepared for patch work (normalised pixels, grid, tissue and labels) and the torch patch dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from plaid.datalist import CaseRecord
from plaid.errors import PlaidInputError
from plaid.image_io import ImageMeta, normalise_intensity, read_mammogram
from plaid.label_io import read_label_mask
from plaid.patch_labels import patch_labels_from_mask
from plaid.sampling import PatchIndex
from plaid.spacing import image_spacing, resample_image, resample_mask, target_shape
from plaid.tiling import DEFAULT_PATCH_SIZE, PatchGrid, extract_patches, grid_for
from plaid.tissue import tissue_mask, tissue_patches

logger = logging.getLogger(__name__)

UINT16_SCALE = 65535.0
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class PatchSettings:
    """How an image is cut and which patches count."""

    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None
    min_overlap: float = 0.0
    skip_background: bool = True
    tissue_min_fraction: float = 0.0
    target_spacing_mm: float | None = None
    pixel_spacing_mm: float | None = None

    def spacing_of(self, record: CaseRecord, meta: ImageMeta) -> float | None:
        """An image's pixel spacing: DICOM header, else the record's metadata, else ``pixel_spacing_mm``."""
        header = float(meta.pixel_spacing_mm[0]) if meta.pixel_spacing_mm else None
        return image_spacing(header, record.pixel_spacing_mm, self.pixel_spacing_mm)

    def working_shape(self, record: CaseRecord, meta: ImageMeta, shape: tuple[int, int]) -> tuple[int, int]:
        """The size the image is tiled at: resampled to ``target_spacing_mm`` when set, else its own."""
        return target_shape(shape, self.spacing_of(record, meta), self.target_spacing_mm)


@dataclass
class PreparedImage:
    """A mammogram ready for patch sampling: intensities in [0, 1] stored as uint16 to halve memory."""

    record: CaseRecord
    pixels: np.ndarray
    grid: PatchGrid
    tissue: np.ndarray
    meta: ImageMeta
    labels: np.ndarray | None = None

    def patches(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Float32 patches in [0, 1] for the given grid indices."""
        return unit_patches(self.pixels, self.grid, indices)

    def eligible_negatives(self) -> np.ndarray:
        """Patches that may be drawn as negatives: tissue patches (or all when skipping is off)."""
        return self.tissue


def to_unit_uint16(pixels: np.ndarray) -> np.ndarray:
    """Normalise to [0, 1] and store as uint16 (no 8-bit round trip)."""
    return np.rint(normalise_intensity(pixels) * UINT16_SCALE).astype(np.uint16)


def unit_patches(unit_pixels: np.ndarray, grid: PatchGrid, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Float32 patches in [0, 1] from an image stored by `to_unit_uint16`."""
    return extract_patches(unit_pixels, grid, indices).astype(np.float32) / UINT16_SCALE


def prepare_image(
    record: CaseRecord, settings: PatchSettings, with_label: bool = True
) -> PreparedImage:
    """Read one case, normalise it, lay the grid, find tissue patches and (optionally) patch labels."""
    image = read_mammogram(record.image, min_size=settings.patch_size)
    pixels = resample_image(image.pixels, settings.working_shape(record, image.meta, image.shape))
    grid = grid_for(pixels, settings.patch_size, settings.stride)
    if settings.skip_background:
        tissue = tissue_patches(tissue_mask(pixels), grid, settings.tissue_min_fraction)
    else:
        tissue = np.ones(len(grid), dtype=bool)
    record.fill_from(image.meta)
    labels = None
    if with_label:
        if not record.label:
            raise PlaidInputError(f"image {record.image_id} has no annotation mask", record.image)
        mask = resample_mask(read_label_mask(record.label, image.shape), pixels.shape)
        labels = patch_labels_from_mask(mask, grid, settings.min_overlap, record.label)
    return PreparedImage(
        record=record,
        pixels=to_unit_uint16(pixels),
        grid=grid,
        tissue=tissue,
        meta=image.meta,
        labels=labels,
    )


@dataclass
class Problem:
    """A case that could not be used, and why."""

    path: str
    message: str


def process_records(
    records: Sequence[CaseRecord],
    work: Callable[[CaseRecord], ResultT],
    on_error: str = "skip",
    progress: bool = False,
    description: str = "reading images",
) -> tuple[list[ResultT], list[Problem]]:
    """Apply ``work`` to every record; bad inputs are skipped with a warning (``on_error='skip'``) or stop
    the run ('stop'). Returns the results and the problems met."""
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    results: list[ResultT] = []
    problems: list[Problem] = []
    iterator: Iterable[CaseRecord] = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc=description, unit="image")
    for record in iterator:
        try:
            results.append(work(record))
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
    """Prepare many cases with `process_records` (skip or stop on bad input)."""
    return process_records(
        records, lambda record: prepare_image(record, settings, with_label=with_label),
        on_error=on_error, progress=progress,
    )


def patch_index_for(images: Sequence[PreparedImage]) -> PatchIndex:
    """The candidate-patch table over labelled images: all positives, tissue patches as negatives."""
    return PatchIndex.from_images(
        [image.labels for image in images], [image.eligible_negatives() for image in images]
    )


class PatchDataset(Dataset):
    """Patches named by a `PatchIndex`, as (1, H, W) float tensors in [0, 1] with a float label."""

    def __init__(self, images: Sequence[PreparedImage], index: PatchIndex, augment: bool = False,
                 seed: int = 0) -> None:
        self.images = images
        self.index = index
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[int(self.index.image[row])]
        patch = image.patches([int(self.index.patch[row])])[0]
        if self.augment:
            patch = augment_patch(patch, self.rng)
        tensor = torch.from_numpy(np.ascontiguousarray(patch)).unsqueeze(0)
        return tensor, torch.tensor(float(self.index.label[row]))


def augment_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90-degree rotations: label-preserving for patch classification."""
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1, :]
    return np.rot90(patch, int(rng.integers(0, 4)))

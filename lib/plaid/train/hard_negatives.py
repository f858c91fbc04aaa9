"""Hard negatives: patches over other abnormalities (masses, distortions) that must not be called calcification.

Dataset adapters write these regions to ``findings/<image_id>.png`` beside the images; a share of each
epoch's negatives can be drawn from the patches they cover.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plaid.importers.common import FINDINGS_FOLDER
from plaid.io.labels import read_label_mask
from plaid.patches.labels import patch_labels_from_mask
from plaid.patches.prepared import PreparedImage
from plaid.patches.sampling import PatchIndex
from plaid.patches.spacing import resample_mask

logger = logging.getLogger(__name__)


def finding_mask_path(image: PreparedImage) -> Path:
    """Where an adapter puts the findings mask of this image."""
    return Path(image.record.image).parent / FINDINGS_FOLDER / f"{image.record.image_id}.png"


def finding_patches(image: PreparedImage) -> np.ndarray:
    """Boolean per grid patch: True where the patch overlaps a finding (all False without a findings mask)."""
    path = finding_mask_path(image)
    if not path.is_file():
        return np.zeros(len(image.grid), dtype=bool)
    mask = resample_mask(read_label_mask(path), (image.grid.height, image.grid.width))
    return patch_labels_from_mask(mask, image.grid, 0.0, str(path))


def hard_negative_rows(images: Sequence[PreparedImage], index: PatchIndex, fraction: float) -> np.ndarray | None:
    """Rows of ``index`` that are negatives over a finding; None when hard negatives are off."""
    if fraction <= 0:
        return None
    flags = [finding_patches(image) for image in images]
    hard = np.array([flags[i][p] for i, p in zip(index.image, index.patch, strict=True)], dtype=bool)
    rows = np.flatnonzero(hard & (index.label == 0))
    logger.info("%d negative patches over masses or other findings (hard negatives)", len(rows))
    return rows

"""Local datastore that refuses unreadable images and mis-sized labels before anything is written."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

from lib.errors import http_error
from plaid.errors import PlaidError
from plaid.image_io import read_mammogram
from plaid.label_io import label_suffix, read_label_mask

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ["*.png", "*.tif", "*.tiff", "*.dcm", "*.pgm"]
LABEL_PATTERNS = ["*.nrrd", "*.nii.gz", "*.nii"]


class CheckedLocalDatastore(LocalDatastore):
    """A `LocalDatastore` that validates uploads with PLAID's readers (4xx errors, nothing stored on failure)."""

    def __init__(self, *args: Any, min_image_size: int = 224, **kwargs: Any) -> None:
        self.min_image_size = min_image_size
        super().__init__(*args, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store an uploaded image only if PLAID can read it as a mammogram."""
        try:
            image = read_mammogram(image_filename, min_size=self.min_image_size)
        except PlaidError as exc:
            raise http_error(exc) from exc
        info = dict(image_info or {})
        info.setdefault("shape", list(image.shape))
        return super().add_image(image_id, image_filename, info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store a label only if it is readable and has its image's exact height and width."""
        image_path = self.get_image_uri(image_id)
        if not image_path:
            raise HTTPException(status_code=404, detail=f"image '{image_id}' is not in the datastore")
        try:
            image = read_mammogram(image_path)
            read_label_mask(label_filename, image.shape)
        except PlaidError as exc:
            raise http_error(exc) from exc
        label_id = super().save_label(image_id, label_filename, label_tag, label_info)
        self._remove_stale_labels(image_id, label_tag, label_suffix(label_filename))
        return label_id

    def _remove_stale_labels(self, image_id: str, label_tag: str, kept_suffix: str) -> None:
        """A newly saved label replaces one of the same image and tag stored with another file type."""
        folder = Path(self._datastore.label_path(label_tag))
        for candidate in folder.glob(f"{image_id}.*"):
            if candidate.name != f"{image_id}{kept_suffix}" and label_suffix(candidate.name) != kept_suffix:
                if candidate.name[: -len(label_suffix(candidate.name))] == image_id:
                    logger.info("replacing older %s label %s", label_tag, candidate)
                    os.remove(candidate)

"""Local datastore that lists only mammograms PLAID can read and refuses bad uploads before anything is written.

It keeps MONAI Label's `LocalDatastore` contract: unknown images raise `ImageNotFoundException`, labels of
one image and tag live in ``labels/<tag>/<image id><ext>`` and every write happens inside MONAI Label's
own file lock. PLAID's refusals (documented in docs/security.md) raise `plaid.errors` exceptions, which
the app turns into 4xx answers in one place (`lib.server.errors`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Sequence
from typing import Any

from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException

from lib.datastore.label_versions import remove_versioned, save_versioned
from lib.datastore.names import check_name
from lib.datastore.stored_info import CheckedInfo, check_image_info, check_label_info
from plaid.errors import PlaidError, PlaidInputError
from plaid.io.datalist import METADATA_FILES
from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask

logger = logging.getLogger(__name__)

IMAGE_PATTERNS = ["*.png", "*.tif", "*.tiff", "*.dcm", "*.pgm"]
LABEL_PATTERNS = ["*.nrrd", "*.nii.gz", "*.nii", "*.png", "*.tif", "*.tiff"]
DATASTORE_FILES = ("datastore_v2.json", ".lock", *METADATA_FILES)


class ImageExistsError(PlaidError, FileExistsError):
    """An upload would replace an image already in the datastore."""


def matches(name: str, patterns: Sequence[str]) -> bool:
    """True when the file name matches one of the glob ``patterns``."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


class CheckedLocalDatastore(CheckedInfo, LocalDatastore):
    """A `LocalDatastore` listing readable mammograms only and validating every upload and info with PLAID's
    readers and `lib.datastore.stored_info`."""

    def __init__(self, datastore_path: str, *args: Any, min_image_size: int = 224,
                 image_patterns: Sequence[str] = tuple(IMAGE_PATTERNS),
                 label_patterns: Sequence[str] = tuple(LABEL_PATTERNS), **kwargs: Any) -> None:
        self.min_image_size = min_image_size
        self.image_patterns = list(image_patterns)
        self.label_patterns = list(label_patterns)
        kwargs.setdefault("extensions", sorted(set(image_patterns) | set(label_patterns)))
        super().__init__(datastore_path, *args, **kwargs)
        self._log_ignored_files()

    def _log_ignored_files(self) -> None:
        """One warning naming the files in the studies folder that are not images PLAID reads."""
        folder = self._datastore.image_path()
        ignored = sorted(
            name for name in os.listdir(folder)
            if os.path.isfile(os.path.join(folder, name)) and not name.startswith(".")
            and name not in DATASTORE_FILES and not matches(name, self.image_patterns)
        )
        if ignored:
            shown = ", ".join(ignored[:20]) + (f" and {len(ignored) - 20} more" if len(ignored) > 20 else "")
            logger.warning("ignoring %d file(s) in the studies folder that are not mammograms PLAID reads (%s): %s",
                           len(ignored), " ".join(self.image_patterns), shown)

    def _list_files(self, path: str, patterns: Sequence[str]) -> dict[str, str]:
        """MONAI Label's listing, restricted to mammogram patterns in the images folder."""
        if os.path.realpath(path) == os.path.realpath(self._datastore.image_path()):
            patterns = [pattern for pattern in patterns if pattern in self.image_patterns]
        return super()._list_files(path, patterns)

    def _remove_non_existing(self) -> int:
        """MONAI Label's clean-up, also dropping entries (from an older datastore file) PLAID cannot read."""
        invalidate = super()._remove_non_existing()
        unreadable = [image_id for image_id, obj in self._datastore.objects.items()
                      if not matches(self._filename(image_id, obj.image.ext), self.image_patterns)]
        for image_id in unreadable:
            logger.info("not listing %s%s: not a mammogram file type PLAID reads", image_id,
                        self._datastore.objects[image_id].image.ext)
            del self._datastore.objects[image_id]
        return invalidate + len(unreadable)

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """MONAI Label's image info without the server-side ``path`` (clients download by id)."""
        info = super().get_image_info(image_id)
        info.pop("path", None)
        return info

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store an uploaded image only if its id is a plain name, it is new, and PLAID can read it."""
        derived_id, extension = self._to_id(os.path.basename(image_filename))
        image_id = check_name(image_id or derived_id, "image id")
        image_info = check_image_info(image_info, "params")
        if not matches(f"{image_id}{extension}", self.image_patterns):
            raise PlaidInputError(f"unsupported image file type {extension!r}; expected one of "
                                  f"{' '.join(self.image_patterns)}")
        if image_id in self._datastore.objects:
            raise ImageExistsError(f"image '{image_id}' is already in the datastore; remove it first to replace it")
        read_mammogram(image_filename, min_size=self.min_image_size)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store a label only if its tag is a plain name and it is readable with its image's exact shape; the
        label it replaces stays as an earlier version (`lib.datastore.label_versions`)."""
        check_name(label_tag, "label tag")
        label_info = check_label_info(label_info, "params")
        image_path = self.get_image_uri(image_id)
        if not image_path:
            raise ImageNotFoundException(f"Image {image_id} not found")
        extension = self._to_id(os.path.basename(label_filename))[1]
        if not matches(f"label{extension}", self.label_patterns):
            raise PlaidInputError(f"unsupported label file type {extension!r}; expected one of "
                                  f"{' '.join(self.label_patterns)}")
        image = read_mammogram(image_path)
        read_label_mask(label_filename, image.shape)
        return save_versioned(self, image_id, label_filename, label_tag, label_info)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Remove the current label; its versions stay recoverable (`lib.datastore.label_versions`)."""
        remove_versioned(self, label_id, label_tag)


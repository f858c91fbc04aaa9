"""The one rule for client-chosen names that become file or folder names, shared by both datastores and the trainer.

Image ids, label ids and tags, and training run names all pass `check_name`; DICOM UIDs (the DICOMweb
datastore's image ids) pass `check_uid` before they reach the PACS or the cache folder.
"""

from __future__ import annotations

import re
from typing import Any

from plaid.errors import PlaidInputError

NAME_RULE = re.compile(r"(?![.\- ])[^/\\\x00-\x1f\x7f]{1,128}(?<! )")
UID_RULE = re.compile(r"[0-9]+(\.[0-9]+)*")
MAX_UID_LENGTH = 64


class InvalidNameError(PlaidInputError):
    """A client-chosen image id, label tag or run name is not a plain name (path separators, '..', odd characters)."""


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a plain file-name stem, else `InvalidNameError` naming ``what``.

    A plain name has 1-128 characters, no path separator, no control character, no lone surrogate and no
    '..', does not start with '.', '-' or a space and does not end with a space (Slicer's volume names
    such as 'MG 1' pass).
    """
    if not isinstance(value, str) or not NAME_RULE.fullmatch(value) or ".." in value or not is_encodable(value):
        shown = value[:80] if isinstance(value, str) else value
        raise InvalidNameError(
            f"{what} {shown!r} is not a valid name: 1 to 128 characters without '/', '\\', '..' or control "
            "characters, not starting with '.', '-' or a space"
        )
    return value


def is_uid(value: Any) -> bool:
    """True for a DICOM UID: digits separated by single dots, at most 64 characters."""
    return isinstance(value, str) and len(value) <= MAX_UID_LENGTH and UID_RULE.fullmatch(value) is not None


def check_uid(value: Any, what: str) -> str:
    """``value`` if it is a DICOM UID, else `InvalidNameError` naming ``what``."""
    if not is_uid(value):
        shown = value[:80] if isinstance(value, str) else value
        raise InvalidNameError(f"{what} {shown!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def is_encodable(text: str) -> bool:
    """False for strings holding lone surrogates, which no file system or JSON answer can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

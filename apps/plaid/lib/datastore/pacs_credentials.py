"""The PACS user and password for the DICOMweb datastore: from a file or the environment, never the command line.

``PLAID_PACS_CREDENTIALS_FILE`` names a file whose first line is ``user:password`` (keep it readable by the
server's user only; a file others may read is refused); otherwise MONAI Label's environment settings
``MONAI_LABEL_DATASTORE_USERNAME`` / ``_PASSWORD`` (or the older ``MONAI_LABEL_DICOMWEB_*``). A studies URL
that carries a user or password (``http://user:pw@host/dicom-web``) is refused: MONAI Label prints its
command line in the log. No message names the password.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from monailabel.config import settings

from plaid.errors import PlaidInputError

logger = logging.getLogger(__name__)

FILE_VARIABLE = "PLAID_PACS_CREDENTIALS_FILE"


def pacs_credentials(url: str) -> tuple[str, str]:
    """(user, password) for the PACS at ``url``; ('', '') when none is configured."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise PlaidInputError(f"the studies URL must not hold a user or password (it is logged): give them in "
                              f"{FILE_VARIABLE} or MONAI_LABEL_DATASTORE_USERNAME / _PASSWORD")
    path = os.environ.get(FILE_VARIABLE, "").strip()
    if path:
        return _from_file(Path(path))
    username = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME or ""
    password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD or ""
    logger.info("PACS login: %s", f"user {username} (password from the environment)" if username else "none")
    return username, password


def _from_file(path: Path) -> tuple[str, str]:
    """The first line of ``path`` as ``user:password``; `PlaidInputError` (naming the file only) otherwise."""
    try:
        mode = path.stat().st_mode
        line = (path.read_text(encoding="utf-8").splitlines() or [""])[0]
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaidInputError(f"{FILE_VARIABLE}: cannot read {path.name} ({type(exc).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PlaidInputError(f"{FILE_VARIABLE}: {path.name} may be read by other users; chmod 600 it")
    username, colon, password = line.partition(":")
    if not colon or not username or not password:
        raise PlaidInputError(f"{FILE_VARIABLE}: the first line of {path.name} must be user:password")
    logger.info("PACS login: user %s (password from %s)", username, path.name)
    return username, password

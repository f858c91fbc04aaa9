"""Private folders for the files the server writes on a client's behalf: the image uploaded with an infer request
and the result file it answers with.

MONAI Label's infer endpoint writes an uploaded image to ``<tmp>/tmpXXXX<ext>`` and answers with the result
file's base name; its Python client saves that answer as ``<client tmpdir>/<base name>``, and the endpoint
deletes its own result file after replying. A result written as ``<tmp>/tmpXXXX.nrrd`` is therefore the very
file a client on the same host with the default tmpdir has just written, and the server's clean-up deletes
the client's copy. PLAID instead keeps each request's files in a fresh folder only the server user can
open (``<tmp>/plaid-request-XXXX/``), removed after the answer is sent: no client path can name them, and
the result's base name is unique, so clients on one host do not overwrite each other either.

`open_request` / `close_request` bracket one infer request; `current_upload` is the only file path (besides
datastore images) the app accepts as an image; `result_path` is where the infer task writes its result;
`check_file_name` and `upload_extension` check an upload's file name before anything is written.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.datastore.json_values import check_text
from plaid.errors import PlaidInputError
from plaid.io.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

FOLDER_PREFIX = "plaid-request-"
MAX_FILE_NAME = 255
UPLOAD_STEM = "upload"
RESULT_PREFIX = "plaid-result-"


@dataclass
class RequestFolder:
    """One request's private folder and the image uploaded with it, if any."""

    path: Path
    upload: Path | None = None


_current: contextvars.ContextVar[RequestFolder | None] = contextvars.ContextVar("plaid_request_folder", default=None)
_fallback_lock = threading.Lock()
_fallback: list[Path] = []


def open_request() -> tuple[RequestFolder, contextvars.Token]:
    """A new private folder for the request being served (mode 0700), made current for this context."""
    folder = RequestFolder(Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX)))
    return folder, _current.set(folder)


def close_request(token: contextvars.Token) -> None:
    """Stop treating the request's folder as current (its files stay until `remove_folder`)."""
    _current.reset(token)


def remove_folder(folder: RequestFolder) -> None:
    """Delete the request's folder and everything in it."""
    shutil.rmtree(folder.path, ignore_errors=True)


def store_upload(folder: RequestFolder, source, extension: str) -> Path:
    """Copy an uploaded file object into the request's folder as ``upload<extension>``; returns its path."""
    target = folder.path / f"{UPLOAD_STEM}{extension}"
    with target.open("wb") as out:
        shutil.copyfileobj(source, out)
    folder.upload = target
    return target


def current_upload() -> Path | None:
    """The image uploaded with the request being served (None without one)."""
    folder = _current.get()
    return folder.upload if folder else None


def is_current_upload(value: object) -> bool:
    """True when ``value`` is exactly the path of the image uploaded with the request being served."""
    upload = current_upload()
    return upload is not None and isinstance(value, str) and value == str(upload)


def result_path(suffix: str) -> str:
    """A new, unique file path for an infer result: in the current request's folder, or (outside a request,
    e.g. batch inference) in a private folder of this process removed at exit."""
    folder = _current.get()
    directory = folder.path if folder else _process_folder()
    handle, path = tempfile.mkstemp(prefix=RESULT_PREFIX, suffix=suffix, dir=directory)
    os.close(handle)
    return path


def _process_folder() -> Path:
    """This process's private result folder (made on first use, removed at exit)."""
    with _fallback_lock:
        if not _fallback or not _fallback[0].is_dir():
            _fallback[:] = [Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))]
            atexit.register(shutil.rmtree, _fallback[0], True)
        return _fallback[0]


def check_file_name(name: Any, field: str) -> str:
    """An uploaded file's name as MONAI Label uses it for a temporary file: printable, at most 255 characters."""
    if name is None or name == "":
        return ""
    text = check_text(name, field, MAX_FILE_NAME)
    if not text.isprintable():
        raise PlaidInputError(f"{field} must be printable text")
    if len("".join(Path(text).suffixes)) > 32:
        raise PlaidInputError(f"{field} has an extension longer than 32 characters")
    return text


def upload_extension(name: Any) -> str:
    """The extension an image uploaded for inference is stored with: one PLAID reads, or none (DICOM)."""
    suffix = Path(check_file_name(name, "file name")).suffix.lower()
    if suffix and suffix not in IMAGE_SUFFIXES:
        raise PlaidInputError(f"file: unsupported image file type {suffix[:32]!r}; expected one of "
                              f"{' '.join(IMAGE_SUFFIXES)}")
    return suffix

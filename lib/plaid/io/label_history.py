"""Every version of every label a datastore ever held, so no correction is lost.

A datastore keeps one current label per image and tag; before PLAID replaces or deletes it, the label is
already here: each save is recorded as a numbered version (a copy of the file and a JSON record of who
saved it, when, and its info), a deletion as a version without a file. Versions live beside the labels,
in ``<datastore root>/.plaid-label-history/<tag>/<image id>/`` (``0001.json``, ``0001.png``, ...), outside
the ``labels/`` folder MONAI Label lists, and stay until an administrator purges them.

Only the file layout lives here; the datastores (apps/plaid/lib/datastore/label_versions.py) decide when to record.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plaid.errors import PlaidInputError
from plaid.io.labels import label_suffix

logger = logging.getLogger(__name__)

HISTORY_DIR = ".plaid-label-history"
DEFAULT_USER = "anonymous"  # recorded when no login identifies who saved (MONAI Label without authentication)
EVENTS = ("saved", "deleted")
_THREAD_LOCK = threading.RLock()


@dataclass(frozen=True)
class LabelVersion:
    """One recorded version: ``file`` is None for a deletion."""

    number: int
    event: str
    user: str
    saved_at: float
    file: Path | None
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The record as JSON-ready values (time also as UTC ISO 8601 text)."""
        return {"version": self.number, "event": self.event, "user": self.user, "saved_at": self.saved_at,
                "saved_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.saved_at)),
                "file": self.file.name if self.file else None, "info": self.info}


class LabelHistory:
    """The versions kept under one datastore root (the studies folder, or the DICOMweb datastore's cache)."""

    def __init__(self, datastore_root: str | Path) -> None:
        self.root = Path(datastore_root) / HISTORY_DIR

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the history's lock (threads of this process and other processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _THREAD_LOCK, (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def folder(self, tag: str, image_id: str) -> Path:
        """The folder of one image's versions under ``tag`` (names must be plain: no separators, no '..')."""
        for name in (tag, image_id):
            if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
                raise PlaidInputError(f"{name!r} is not a plain label tag or image id")
        return self.root / tag / image_id

    def versions(self, tag: str, image_id: str) -> list[LabelVersion]:
        """The versions of one label, oldest first (empty when none was recorded)."""
        folder = self.folder(tag, image_id)
        if not folder.is_dir():
            return []
        return [self._read(record) for record in sorted(folder.glob("[0-9]*.json"))]

    def version(self, tag: str, image_id: str, number: int) -> LabelVersion:
        """Version ``number``, else `PlaidInputError` listing the versions kept."""
        found = {v.number: v for v in self.versions(tag, image_id)}
        if number not in found:
            raise PlaidInputError(f"label {image_id}/{tag} has no version {number}; kept: {sorted(found) or 'none'}")
        return found[number]

    def record(self, tag: str, image_id: str, source: str | Path | None, *, user: str, event: str,
               info: dict[str, Any] | None = None, saved_at: float | None = None) -> LabelVersion:
        """Append a version (a copy of ``source``, or a deletion when None); call with `locked` held."""
        if event not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}")
        folder = self.folder(tag, image_id)
        folder.mkdir(parents=True, exist_ok=True)
        kept = self.versions(tag, image_id)
        number = kept[-1].number + 1 if kept else 1
        stem = f"{number:04d}"
        file = None
        if source is not None:
            file = folder / f"{stem}{label_suffix(source)}"
            shutil.copyfile(source, file)
        entry = {"version": number, "event": event, "user": user or DEFAULT_USER,
                 "saved_at": time.time() if saved_at is None else float(saved_at),
                 "file": file.name if file else None, "info": dict(info or {})}
        staging = folder / f".{stem}.json.tmp"
        staging.write_text(json.dumps(entry, indent=1, default=str))
        staging.replace(folder / f"{stem}.json")
        logger.info("label %s/%s version %d %s by %s", image_id, tag, number, event, entry["user"])
        return self._read(folder / f"{stem}.json")

    def purge(self, tag: str, image_id: str) -> int:
        """Remove every kept version of one label (an administrator's act); the number removed."""
        with self.locked():
            count = len(self.versions(tag, image_id))
            shutil.rmtree(self.folder(tag, image_id), ignore_errors=True)
        logger.warning("purged %d version(s) of label %s/%s", count, image_id, tag)
        return count

    @staticmethod
    def _read(record: Path) -> LabelVersion:
        entry = json.loads(record.read_text())
        file = record.parent / entry["file"] if entry.get("file") else None
        return LabelVersion(number=int(entry["version"]), event=str(entry["event"]), user=str(entry["user"]),
                            saved_at=float(entry["saved_at"]), file=file, info=dict(entry.get("info") or {}))

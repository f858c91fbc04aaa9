"""Label saves and deletions that keep every earlier version (`plaid.io.label_history`), for both datastores.

Who saved a label is the login of the request (MONAI Label's token user) when authentication is on, and
`DEFAULT_USER` ("anonymous") otherwise, whatever the client writes in the label's info; the endpoint
wrappers set it for the request (`acting_user`), Python callers may pass ``user`` in the info. The
current label stays where MONAI Label keeps it (``labels/<tag>/``), so training reads the newest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore

from plaid.io.label_history import DEFAULT_USER, LabelHistory

_ACTING_USER: ContextVar[str | None] = ContextVar("plaid_acting_user", default=None)


@contextmanager
def acting_user(user: str | None) -> Iterator[None]:
    """Within the block, labels are recorded as saved or deleted by ``user`` (the login when authentication is
    on; `DEFAULT_USER` when it is off, as MONAI Label then names every client 'admin')."""
    name = user if settings.MONAI_LABEL_AUTH_ENABLE and user else DEFAULT_USER
    token = _ACTING_USER.set(name)
    try:
        yield
    finally:
        _ACTING_USER.reset(token)


def history_of(store: LocalDatastore) -> LabelHistory:
    """The version history kept beside ``store``'s files."""
    return LabelHistory(store._datastore_path)


def _user(info: dict[str, Any] | None) -> str:
    """The request's user, else the ``user`` a Python caller put in the info, else `DEFAULT_USER`."""
    return _ACTING_USER.get() or str((info or {}).get("user") or DEFAULT_USER)


def _keep_unrecorded(store: LocalDatastore, history: LabelHistory, image_id: str, tag: str) -> None:
    """Record a current label saved before versions were kept (older server, files copied in) as version 1."""
    if history.versions(tag, image_id):
        return
    path = LocalDatastore.get_label_uri(store, image_id, tag)
    if not path or not os.path.isfile(path):
        return
    info = LocalDatastore.get_label_info(store, image_id, tag) or {}
    stamp = info.get("ts") if isinstance(info.get("ts"), (int, float)) else os.stat(path).st_mtime
    history.record(tag, image_id, path, user=str(info.get("user") or "unknown"), event="saved", info=info,
                   saved_at=stamp)


def save_versioned(store: LocalDatastore, image_id: str, label_file: str, tag: str, info: dict[str, Any]) -> str:
    """MONAI Label's `LocalDatastore.save_label`, recorded as a new version with its user and time; an earlier
    label without a version is recorded first. Nothing is recorded when the save fails."""
    history = history_of(store)
    with history.locked():
        _keep_unrecorded(store, history, image_id, tag)
        info = {**info, "user": _user(info)}
        label_id = LocalDatastore.save_label(store, image_id, label_file, tag, info)
        saved = LocalDatastore.get_label_uri(store, label_id, tag)
        history.record(tag, image_id, saved, user=info["user"], event="saved", info=info)
    return label_id


def remove_versioned(store: LocalDatastore, label_id: str, tag: str) -> None:
    """MONAI Label's `LocalDatastore.remove_label`, recorded as a deletion; the versions stay recoverable."""
    path = LocalDatastore.get_label_uri(store, label_id, tag)
    if not path or not os.path.isfile(path):  # nothing to keep (unknown id or tag): MONAI Label's answer
        LocalDatastore.remove_label(store, label_id, tag)
        return
    history = history_of(store)
    with history.locked():
        _keep_unrecorded(store, history, label_id, tag)
        history.record(tag, label_id, None, user=_user(None), event="deleted")
        LocalDatastore.remove_label(store, label_id, tag)


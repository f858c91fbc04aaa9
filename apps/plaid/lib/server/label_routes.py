"""PLAID's API for label versions, beside MONAI Label's datastore routes (in its OpenAPI document).

- ``GET /datastore/label/versions?label=ID&tag=final`` (role user): every kept version of a label, oldest
  first, with its user, time and info (file names only);
- ``PUT /datastore/label/restore?label=ID&version=N&tag=final`` (role annotator): the kept file of version N
  saved again through the datastore's own ``save_label`` (checked like any label; the DICOMweb datastore
  stores it in the PACS), recorded as a new version by the request's login with ``restored_from``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.exception import LabelNotFoundException

from lib.datastore.label_versions import acting_user, history_of
from lib.datastore.names import check_name
from plaid.errors import PlaidInputError

PROTECTED_INFO = ("ts", "name", "user")  # set by the datastore on every save


def _store() -> Any:
    from monailabel.interfaces.utils.app import app_instance

    return app_instance().datastore()


def label_versions(label: str, tag: str = "final",
                   user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))) -> list[dict[str, Any]]:
    """Every kept version of the label, oldest first; 404 when none was kept."""
    check_name(label, "label")
    check_name(tag, "tag")
    versions = history_of(_store()).versions(tag, label)
    if not versions:
        raise LabelNotFoundException(f"label {label}/{tag} has no kept versions")
    return [version.summary() for version in versions]


def restore_label(label: str, version: int, tag: str = "final",
                  user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))) -> dict[str, Any]:
    """Make kept version ``version`` the current label again; the answer names the new version."""
    check_name(label, "label")
    check_name(tag, "tag")
    store = _store()
    kept = {v.number: v for v in history_of(store).versions(tag, label)}
    if version not in kept:
        raise LabelNotFoundException(f"label {label}/{tag} has no version {version}; kept: {sorted(kept) or 'none'}")
    if kept[version].file is None:
        raise PlaidInputError(f"version: version {version} records a deletion; restore one with a file")
    info = {key: value for key, value in kept[version].info.items() if key not in PROTECTED_INFO}
    with acting_user(user.username):
        store.save_label(label, str(kept[version].file), tag, {**info, "restored_from": version})
    return {"image": label, "tag": tag, "version": history_of(store).versions(tag, label)[-1].number,
            "restored_from": version}


def install_routes(app: Any) -> None:
    """Add the two routes before MONAI Label's (idempotent)."""
    if getattr(app.state, "plaid_label_routes", False):
        return
    prefix = f"{settings.MONAI_LABEL_API_STR}/datastore/label"
    for route in (APIRoute(f"{prefix}/versions", label_versions, methods=["GET"], tags=["Datastore"],
                           summary="Kept versions of a label (PLAID)"),
                  APIRoute(f"{prefix}/restore", restore_label, methods=["PUT"], tags=["Datastore"],
                           summary="Restore a kept version of a label (PLAID)")):
        app.router.routes.insert(0, route)
    app.state.plaid_label_routes = True

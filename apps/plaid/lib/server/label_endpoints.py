"""Who saves or deletes a label, from MONAI Label's own endpoint functions into the label's versions.

MONAI Label's label and image endpoints hand the token's user name to the module-level functions
``save_label``, ``remove_label`` and ``remove_image`` (`monailabel.endpoints.datastore`); the datastore
never sees it. Each is wrapped once (after `lib.server.endpoint_guards` has added its checks) to run inside
`lib.datastore.label_versions.acting_user`, so every version records the login that made it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from lib.datastore.label_versions import acting_user

MODULE = "monailabel.endpoints.datastore"
USER_ARGUMENT = {"save_label": 5, "remove_label": 2, "remove_image": 1}  # position of `user` in each function


def _with_user(function: Callable[..., Any], position: int) -> Callable[..., Any]:
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        user = kwargs.get("user", args[position] if len(args) > position else None)
        with acting_user(user):
            return function(*args, **kwargs)

    run.plaid_user = True  # type: ignore[attr-defined]
    return run


def install() -> None:
    """Wrap the three endpoint functions (idempotent; nothing happens when MONAI Label's module is not loaded)."""
    module = sys.modules.get(MODULE)
    if module is None:
        return
    for name, position in USER_ARGUMENT.items():
        function = getattr(module, name)
        if not getattr(function, "plaid_user", False):
            setattr(module, name, _with_user(function, position))

"""Hooks into the running MONAI Label server: error handlers, checks before background tasks, bind warning.

MONAI Label runs training and scoring in a child process and answers the HTTP request before that
process reads its options, so a bad trainer name, training option or scoring method would only show up
later as a failed task. `guard_background_tasks` checks them first, in the request, through the app's
`check_train_request` / `check_scoring_request`, so they get a 4xx like every other bad request.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from monailabel.config import settings

from lib.errors import install_error_handlers

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)


def _checked(function: Callable[..., Any], check: Callable[[str, dict | None], None]) -> Callable[..., Any]:
    """``function(name, params, ...)`` that first runs ``check(name, params)`` on the app instance."""
    if getattr(function, "plaid_checked", False):
        return function

    @functools.wraps(function)
    def wrapper(name: str, params: dict | None = None, *args: Any, **kwargs: Any) -> Any:
        check(name, params)
        return function(name, params, *args, **kwargs)

    wrapper.plaid_checked = True  # type: ignore[attr-defined]
    return wrapper


def guard_background_tasks() -> None:
    """Validate POST /train/{model} and POST /scoring/{method} requests before MONAI Label starts the task."""
    from monailabel.interfaces.utils.app import app_instance

    train = sys.modules.get("monailabel.endpoints.train")
    if train is not None:
        train.run_model = _checked(train.run_model, lambda name, params: app_instance().check_train_request(
            name, params))
    scoring = sys.modules.get("monailabel.endpoints.scoring")
    if scoring is not None:
        scoring.run_method = _checked(scoring.run_method, lambda name, params: app_instance().check_scoring_request(
            name, params))


def served_host(argv: Sequence[str]) -> str | None:
    """The --host of a `monailabel start_server` command line (its default 0.0.0.0), else None."""
    if "start_server" not in argv:
        return None
    for index, arg in enumerate(argv):
        if arg in ("-i", "--host") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--host="):
            return arg.split("=", 1)[1]
    return "0.0.0.0"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str | None, auth_enabled: bool) -> bool:
    """Log a warning when the server listens beyond this machine without authentication; True if it did."""
    if host is None or auth_enabled or is_loopback(host):
        return False
    logger.warning(
        "MONAI Label listens on %s WITHOUT authentication: anyone who can reach this port can read every "
        "image and label, overwrite labels, upload images, delete data and start training. Bind to 127.0.0.1 "
        "(--host 127.0.0.1), or enable MONAI_LABEL_AUTH_ENABLE and put TLS in front (see docs/security.md).",
        host,
    )
    return True


def install() -> None:
    """Everything the app adds to a running server (no-op outside `monailabel start_server`)."""
    module = sys.modules.get("monailabel.app")
    if module is not None:
        install_error_handlers(module.app)
        guard_background_tasks()
    warn_if_exposed(served_host(sys.argv), bool(settings.MONAI_LABEL_AUTH_ENABLE))

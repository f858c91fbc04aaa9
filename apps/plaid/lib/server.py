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
from plaid.errors import PlaidInputError

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
    """Validate POST /train/{model} and POST /scoring/{method} requests before MONAI Label starts the task,
    and POST /infer/{model} requests that name no image."""
    from monailabel.interfaces.utils.app import app_instance

    train = sys.modules.get("monailabel.endpoints.train")
    if train is not None:
        train.run_model = _checked(train.run_model, lambda name, params: app_instance().check_train_request(
            name, params))
    infer = sys.modules.get("monailabel.endpoints.infer")
    if infer is not None:
        infer.run_inference = _infer_needs_an_image(infer.run_inference)
    scoring = sys.modules.get("monailabel.endpoints.scoring")
    if scoring is not None:
        scoring.run_method = _checked(scoring.run_method, lambda name, params: app_instance().check_scoring_request(
            name, params))


def _infer_needs_an_image(run_inference: Callable[..., Any]) -> Callable[..., Any]:
    """MONAI Label's infer endpoint, answering 422 (not its own 500) when the request names no image."""
    if getattr(run_inference, "plaid_checked", False):
        return run_inference

    @functools.wraps(run_inference)
    def wrapper(background_tasks: Any, model: str, image: str = "", session_id: str = "", *args: Any,
                **kwargs: Any) -> Any:
        file = kwargs.get("file", args[1] if len(args) > 1 else None)
        if not image and not session_id and not file:
            raise PlaidInputError("the request names no image: pass a datastore image id or upload a file")
        return run_inference(background_tasks, model, image, session_id, *args, **kwargs)

    wrapper.plaid_checked = True  # type: ignore[attr-defined]
    return wrapper


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

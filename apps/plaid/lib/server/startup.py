"""Hooks into the running MONAI Label server: error handlers, a working token check and PLAID's narrower
roles (`lib.server.auth`), checks inside MONAI Label's endpoints (`lib.server.endpoint_guards`), the user recorded with
each label version (`lib.server.label_endpoints`), the label versions API (`lib.server.label_routes`), and a warning
when it listens beyond loopback without authentication."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Sequence

from monailabel.config import settings

from lib.server import auth, endpoint_guards, label_endpoints, label_routes
from lib.server.errors import install_error_handlers

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)


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
        endpoint_guards.install()
        label_endpoints.install()
        endpoint_guards.install_routes(module.app)
        auth.install(module.app)
        label_routes.install_routes(module.app)
    warn_if_exposed(served_host(sys.argv), bool(settings.MONAI_LABEL_AUTH_ENABLE))

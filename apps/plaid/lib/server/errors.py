"""The one place where errors become HTTP answers: 4xx for anything a request can fix, never a server path.

`install_error_handlers` registers these handlers on MONAI Label's FastAPI app, so every endpoint
(datastore, infer, train, active learning, scoring) answers the same way, while Python callers of the
datastore and tasks still get MONAI Label's and PLAID's own exception types.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)
from pydantic import ValidationError

from lib.datastore.local import ImageExistsError
from plaid.errors import CheckpointError, ModelNotFoundError, PlaidError, PlaidInputError

logger = logging.getLogger(__name__)

ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\"]+)+[/\\]([^/\\\s'\"]+)")


class UnknownTaskError(PlaidError, LookupError):
    """A request names a model, trainer, strategy or scoring method the app does not serve."""

    def __init__(self, kind: str, name: Any, available: list[str]) -> None:
        self.kind = kind
        self.available = sorted(available)
        super().__init__(f"unknown {kind} {name!r}; available: {', '.join(self.available) or 'none'}")


def public_text(text: str) -> str:
    """``text`` with every absolute file path cut down to its last component (no server layout leaks)."""
    return ABSOLUTE_PATH.sub(r"\1", text)


def status_for(exc: BaseException) -> int:
    """HTTP status for an exception: 404 unknown names, 409 model state, 422 bad input, 400 other requests."""
    if isinstance(exc, (UnknownTaskError, ImageNotFoundException, LabelNotFoundException)):
        return 404
    if isinstance(exc, (ModelNotFoundError, CheckpointError, ImageExistsError)):
        return 409
    if isinstance(exc, (PlaidInputError, ValidationError)):  # pydantic: a client's JSON failed an endpoint's model
        return 422
    if isinstance(exc, json.JSONDecodeError):  # MONAI Label's endpoints parse the client's `params`/`info` forms
        return 400
    if isinstance(exc, PlaidError):
        return 400
    if isinstance(exc, MONAILabelException) and exc.error == MONAILabelError.INVALID_INPUT:
        return 400
    return 500


def detail_for(exc: BaseException) -> str:
    """The message a client sees for ``exc``, without server paths."""
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON in the request parameters: {exc}"
    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                    for error in exc.errors()[:5]]
        return public_text(f"invalid {exc.title}: " + "; ".join(problems))
    text = exc.msg if isinstance(exc, MONAILabelException) else str(exc)
    return public_text(str(text))


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    body: dict[str, Any] = {"detail": detail_for(exc)}
    if isinstance(exc, UnknownTaskError):
        body["available"] = exc.available
    log = logger.warning if status < 500 else logger.error
    log("%s %s -> %d: %s", request.method, request.url.path, status, body["detail"])
    return JSONResponse(status_code=status, content=body)


def install_error_handlers(app: Any) -> None:
    """Register the handlers on a FastAPI/Starlette app (idempotent; effective for the next request)."""
    if getattr(app.state, "plaid_error_handlers", False):
        return
    for kind in (PlaidError, MONAILabelException, json.JSONDecodeError, ValidationError):
        app.add_exception_handler(kind, _error_response)
    app.state.plaid_error_handlers = True
    app.middleware_stack = None  # Starlette copies its handlers when it builds the stack: rebuild it

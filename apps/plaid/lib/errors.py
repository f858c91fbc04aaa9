"""Turn PLAID's typed errors into HTTP errors with a message, so a bad request never looks like a crash."""

from __future__ import annotations

from fastapi import HTTPException

from plaid.errors import ImageReadError, ModelNotFoundError, PlaidError, PlaidInputError


def http_error(exc: Exception) -> HTTPException:
    """The HTTP error a client should see for ``exc`` (4xx for anything the request can fix)."""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, ModelNotFoundError):
        return HTTPException(status_code=409, detail=str(exc))
    if isinstance(exc, ImageReadError):
        return HTTPException(status_code=422, detail=f"unreadable image or label: {exc}")
    if isinstance(exc, PlaidInputError):
        return HTTPException(status_code=422, detail=str(exc))
    if isinstance(exc, PlaidError):
        return HTTPException(status_code=400, detail=str(exc))
    return HTTPException(status_code=500, detail=f"{type(exc).__name__}: {exc}")

"""Checks on JSON values, shared by what the datastores store and what the server accepts.

The datastores check every `info` document they write with these; `lib.server.request_checks` builds the
request checks on them. They live here, not in `lib.server`, so that the server depends on the datastore
and never the other way round (`tests/test_package_structure.py` holds that order).

Every failure is a `PlaidInputError` (422) whose message names the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from lib.datastore.names import is_encodable
from plaid.errors import PlaidInputError

MAX_JSON_BYTES = 256 * 1024  # a params / info document (the infer result stored with a label fits easily)
MAX_DEPTH = 8
MAX_STRING = 16 * 1024
MAX_INTEGER = 2**53  # the largest integer a JavaScript client (OHIF) reads exactly
MAX_CLIENT_ID = 128


def check_json_object(value: Any, field: str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """``value`` if it is a JSON object that `check_json` accepts and serialises to at most ``limit`` bytes."""
    if not isinstance(value, Mapping):
        raise PlaidInputError(f"{field} must be a JSON object, got {kind_of(value)}")
    check_json(value, field)
    if len(json.dumps(value).encode("utf-8")) > limit:
        raise PlaidInputError(f"{field} is larger than {limit // 1024} KB")
    return dict(value)


def check_json(value: Any, field: str, depth: int = 0) -> None:
    """Raise `PlaidInputError` naming the first bad member of ``value``: nesting deeper than `MAX_DEPTH`, a
    non-finite or oversized number, a string with a NUL or a lone surrogate, a non-string key."""
    if depth > MAX_DEPTH:
        raise PlaidInputError(f"{field} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            raise PlaidInputError(f"{field} is out of range: integers must be within +-2**53")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlaidInputError(f"{field} must be a finite number, got {value!r}")
        return
    if isinstance(value, str):
        check_text(value, field, MAX_STRING)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PlaidInputError(f"{field} has a non-string key {key!r}")
            check_text(key, f"{field} key", 256)
            check_json(item, f"{field}.{key[:64]}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json(item, f"{field}[{index}]", depth + 1)
        return
    raise PlaidInputError(f"{field} holds a {kind_of(value)}, which is not a JSON value")


def check_text(value: Any, field: str, limit: int) -> str:
    """``value`` if it is a string of at most ``limit`` characters without NUL or lone surrogates."""
    if not isinstance(value, str):
        raise PlaidInputError(f"{field} must be a string, got {kind_of(value)}")
    if len(value) > limit:
        raise PlaidInputError(f"{field} is longer than {limit} characters")
    if "\x00" in value:
        raise PlaidInputError(f"{field} contains a NUL character")
    if not is_encodable(value):
        raise PlaidInputError(f"{field} is not valid Unicode (lone surrogate)")
    return value


def check_number(value: Any, field: str, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite JSON number (not a boolean, not a string) within [low, high] (low excluded if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlaidInputError(f"{field} must be a number, got {kind_of(value)}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise PlaidInputError(f"{field} must be within {bound}{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_client_id(value: Any, field: str = "client_id") -> str | None:
    """A client id stored with each handed-out image: None, or printable text of at most 128 characters."""
    if value is None:
        return None
    text = check_text(value, field, MAX_CLIENT_ID)
    if not text.isprintable():
        raise PlaidInputError(f"{field} must be printable text")
    return text


def kind_of(value: Any) -> str:
    """A JSON-ish name for the type of ``value`` (for messages)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)

"""Checks on the JSON values a client sends: the shape every `params` / `info` form or body must have, and the
MONAI Label request keys PLAID's tasks read (the infer task's own options live with the infer task).

Every failure is a `PlaidInputError` (422) or `MalformedJSONError` (400) whose message names the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from lib.datastore.names import check_name
from plaid.errors import PlaidError, PlaidInputError
from plaid.options import OptionDoc, strict_bool

MAX_JSON_BYTES = 256 * 1024  # a params / info document (the infer result stored with a label fits easily)
MAX_TASK_JSON_BYTES = 16 * 1024  # a training / scoring / batch request: it travels on a child process's command line
MAX_DEPTH = 8
MAX_STRING = 16 * 1024
MAX_INTEGER = 2**53  # the largest integer a JavaScript client (OHIF) reads exactly
MAX_CLIENT_ID = 128
DEVICE_RULE = re.compile(r"(cpu|cuda|mps)(:[0-9]{1,2})?")
MAX_INFER_TIMEOUT_S = 24 * 3600.0


class MalformedJSONError(PlaidError):
    """A `params` / `info` form field that is not JSON at all (400)."""


def parse_json_object(text: Any, field: str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in the form field ``field`` ('' means {}); `MalformedJSONError` or `PlaidInputError`."""
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise PlaidInputError(f"{field} must be a JSON object")
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise PlaidInputError(f"{field} is larger than {limit // 1024} KB")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedJSONError(f"malformed JSON in {field}: {exc.msg} (line {exc.lineno} column {exc.colno})") \
            from None
    except RecursionError:
        raise PlaidInputError(f"{field} is nested more than {MAX_DEPTH} levels deep") from None
    return check_json_object(value, field, limit)


def check_json_object(value: Any, field: str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """``value`` if it is a JSON object that `check_json` accepts and serialises to at most ``limit`` bytes."""
    if not isinstance(value, Mapping):
        raise PlaidInputError(f"{field} must be a JSON object, got {_kind(value)}")
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
    raise PlaidInputError(f"{field} holds a {_kind(value)}, which is not a JSON value")


def check_text(value: Any, field: str, limit: int) -> str:
    """``value`` if it is a string of at most ``limit`` characters without NUL or lone surrogates."""
    if not isinstance(value, str):
        raise PlaidInputError(f"{field} must be a string, got {_kind(value)}")
    if len(value) > limit:
        raise PlaidInputError(f"{field} is longer than {limit} characters")
    if "\x00" in value:
        raise PlaidInputError(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PlaidInputError(f"{field} is not valid Unicode (lone surrogate)") from None
    return value


def check_bool(value: Any, field: str) -> bool:
    """A boolean option (true/false or the words `plaid.options.strict_bool` takes), else `PlaidInputError`."""
    if not isinstance(value, (bool, str)):
        raise PlaidInputError(f"{field} must be true or false, got {_kind(value)}")
    try:
        return strict_bool(value)
    except ValueError as exc:
        raise PlaidInputError(f"{field}: {exc}") from None


def check_number(value: Any, field: str, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite JSON number (not a boolean, not a string) within [low, high] (low excluded if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlaidInputError(f"{field} must be a number, got {_kind(value)}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise PlaidInputError(f"{field} must be within {bound}{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_whole(value: Any, field: str, low: int, high: int) -> int:
    """A JSON integer (not a boolean, not a string, no fraction) within [low, high]."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlaidInputError(f"{field} must be a whole number, got {_kind(value)} {value!r}"[:200])
    if not low <= value <= high:
        raise PlaidInputError(f"{field} must be within [{low}, {high}], got {value}")
    return value


def check_same(params: Mapping[str, Any], key: str, expected: Any) -> None:
    """Refuse ``params[key]`` when it would replace the name given in the URL (MONAI Label merges them)."""
    if key in params and params[key] != expected:
        raise PlaidInputError(f"params.{key} {str(params[key])[:80]!r} differs from the {key} in the URL "
                              f"({expected!r}); leave it out")


def check_client_id(value: Any, field: str = "client_id") -> str | None:
    """A client id stored with each handed-out image: None, or printable text of at most 128 characters."""
    if value is None:
        return None
    text = check_text(value, field, MAX_CLIENT_ID)
    if not text.isprintable():
        raise PlaidInputError(f"{field} must be printable text")
    return text


def check_device(value: Any, field: str = "device") -> str:
    """A torch device name such as 'cpu', 'cuda' or 'cuda:1'."""
    if not isinstance(value, str) or not DEVICE_RULE.fullmatch(value):
        raise PlaidInputError(f"{field} must be cpu, cuda, cuda:N or mps, got {str(value)[:40]!r}")
    return value


# The keys of POST /activelearning/{strategy}'s body that `check_strategy_params` checks (for the docs' table).
STRATEGY_PARAMS = (
    OptionDoc("client_id", "who asks (printable text, at most 128 characters); stored with the image handed out",
              "none"),
    OptionDoc("label_tag", "MONAI Label's: handed to the datastore's query for unlabeled images (a plain name)",
              "none"),
    OptionDoc("labels", "MONAI Label's: handed to that query as well (a list of plain names)", "none"),
)


def check_strategy_params(strategy: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body of POST /activelearning/{strategy}: an object whose keys PLAID's strategies and MONAI Label read
    (``client_id``, ``label_tag``, ``labels``, ``strategy``) are well typed."""
    values = check_json_object(params if params is not None else {}, "params")
    check_same(values, "strategy", strategy)
    if "client_id" in values:
        check_client_id(values["client_id"], "params.client_id")
    if values.get("label_tag") is not None:
        check_name(values["label_tag"], "params.label_tag")
    labels = values.get("labels")
    if labels is not None:
        if not isinstance(labels, list):
            raise PlaidInputError(f"params.labels must be a list of label names, got {_kind(labels)}")
        for index, label in enumerate(labels):
            check_name(label, f"params.labels[{index}]")
    return values


def _kind(value: Any) -> str:
    """A JSON-ish name for the type of ``value`` (for messages)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)

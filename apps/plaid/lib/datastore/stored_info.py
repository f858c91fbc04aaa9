"""Image and label info kept in the datastore for later readers: checked when written, read defensively.

Info is free-form JSON (MONAI Label clients store their own keys), but some keys are read later by
PLAID or MONAI Label: the active-learning values and the model that made them, the active-learning log of when
each strategy handed an image out, and the label's time stamp and SEG UID. A write with a bad value for
one of them is refused (`PlaidInputError` naming the field); a bad value already stored (an older
server, an edited datastore_v2.json) is skipped with a warning when read, so no reader fails on it.
`CheckedInfo` applies both rules to a `LocalDatastore` subclass (both PLAID datastores use it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from lib.datastore.json_values import check_client_id, check_json, check_json_object, check_number, check_text
from lib.datastore.names import check_name, check_uid
from plaid.activelearning.strategies import MODEL_KEY, RANKED, VALUES_KEY
from plaid.errors import PlaidInputError

logger = logging.getLogger(__name__)

MAX_TIMESTAMP = 2**42  # seconds since the epoch: far beyond any real date, well within a JSON number
MAX_VALUE = 1e9  # the largest strategy value stored (bits of entropy summed over patches stay far below)


def _values(value: Any, field: str) -> Any:
    """{ranked strategy name: finite number within [0, MAX_VALUE]}."""
    if not isinstance(value, Mapping):
        raise PlaidInputError(f"{field} must be an object of strategy names")
    for name, number in value.items():
        if name not in RANKED:
            raise PlaidInputError(f"{field} has an unknown strategy {str(name)[:64]!r} (known: {', '.join(RANKED)})")
        check_number(number, f"{field}.{name}", 0.0, MAX_VALUE)
    return value


def _stamp(value: Any, field: str) -> Any:
    check_number(value, field, 0.0, MAX_TIMESTAMP)
    return value


def _model_stamp(value: Any, field: str) -> Any:
    return check_text(value, field, 64)


def _strategy_log(value: Any, field: str) -> Any:
    """{strategy name: {"ts": seconds, "client_id": text or null}} as MONAI Label's next-sample endpoint writes."""
    if not isinstance(value, Mapping):
        raise PlaidInputError(f"{field} must be an object of strategy names")
    for name, entry in value.items():
        check_name(name, f"{field} key")
        if not isinstance(entry, Mapping):
            raise PlaidInputError(f"{field}.{name} must be an object with ts and client_id")
        unknown = sorted(set(entry) - {"ts", "client_id"})
        if unknown:
            raise PlaidInputError(f"{field}.{name} has unknown keys {unknown[:5]} (allowed: ts, client_id)")
        if "ts" in entry:
            _stamp(entry["ts"], f"{field}.{name}.ts")
        check_client_id(entry.get("client_id"), f"{field}.{name}.client_id")
    return value


def _uid(value: Any, field: str) -> Any:
    return check_uid(value, field)


def _object(value: Any, field: str) -> Any:
    """A JSON object or null (the inference options PLAID stores with a model's label)."""
    return value if value is None else check_json_object(value, field)


FieldCheck = Callable[[Any, str], Any]
IMAGE_FIELDS: dict[str, FieldCheck] = {VALUES_KEY: _values, MODEL_KEY: _model_stamp, "strategy": _strategy_log,
                                       "ts": _stamp}
LABEL_FIELDS: dict[str, FieldCheck] = {"ts": _stamp, "seg_sop_instance_uid": _uid, "params": _object}


def check_info(info: Any, fields: Mapping[str, FieldCheck], what: str = "info") -> dict[str, Any]:
    """``info`` as a dict if it is a JSON object with valid values for the known ``fields``, else
    `PlaidInputError` naming the field."""
    values = check_json_object(info if info is not None else {}, what)
    for key, check in fields.items():
        if key in values:
            check(values[key], f"{what}.{key}")
    return values


def check_image_info(info: Any, what: str = "info") -> dict[str, Any]:
    """Image info a client may store (see `IMAGE_FIELDS`)."""
    return check_info(info, IMAGE_FIELDS, what)


def check_label_info(info: Any, what: str = "info") -> dict[str, Any]:
    """Label info a client may store (see `LABEL_FIELDS`)."""
    return check_info(info, LABEL_FIELDS, what)


def readable(info: Any, fields: Mapping[str, FieldCheck], owner: str) -> dict[str, Any]:
    """A copy of stored ``info`` without the fields whose value is bad for their reader, or no JSON value at all
    (NaN, a lone surrogate...); each one skipped is warned about."""
    if not isinstance(info, Mapping):
        logger.warning("%s: stored info is not an object; ignored", owner)
        return {}
    values = dict(info)
    for key in list(values):
        try:
            check_json(values[key], str(key))
            if key in fields:
                fields[key](values[key], key)
        except PlaidInputError as exc:
            logger.warning("%s: stored %s skipped: %s", owner, str(key)[:64], exc)
            del values[key]
    return values


def _field(info: Any, key: str, check: FieldCheck, owner: str) -> Any:
    """``info[key]`` when present and valid, else None (a bad value is warned about)."""
    if not isinstance(info, Mapping) or info.get(key) is None:
        return None
    try:
        return check(info[key], key)
    except PlaidInputError as exc:
        logger.warning("%s: stored %s skipped: %s", owner, key, exc)
        return None


def stored_values(info: Any, owner: str) -> dict[str, float]:
    """The image's stored strategy values ({} when absent or bad, warned about)."""
    return {name: float(value) for name, value in (_field(info, VALUES_KEY, _values, owner) or {}).items()}


def handed_out_at(info: Any, strategy: str, owner: str) -> float:
    """When ``strategy`` last handed the image out (seconds since the epoch; 0 when never, or the log is bad)."""
    log = _field(info, "strategy", _strategy_log, owner) or {}
    return float((log.get(strategy) or {}).get("ts", 0))


class CheckedInfo:
    """Mixin for a `LocalDatastore` subclass: info checked on update, bad stored fields skipped on read."""

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        """Merge checked ``info`` into the image's info."""
        super().update_image_info(image_id, check_image_info(info))  # type: ignore[misc]

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """Merge checked ``info`` into the label's info."""
        super().update_label_info(label_id, label_tag, check_label_info(info))  # type: ignore[misc]

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """The image's info, without stored fields whose value is bad."""
        return readable(super().get_image_info(image_id), IMAGE_FIELDS, f"image {image_id}")  # type: ignore[misc]

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        """The label's info, without stored fields whose value is bad."""
        info = super().get_label_info(label_id, label_tag)  # type: ignore[misc]
        return readable(info, LABEL_FIELDS, f"label {label_id}/{label_tag}")

    def json(self) -> dict[str, Any]:
        """MONAI Label's datastore document, every info read as `get_image_info` / `get_label_info` do."""
        content = super().json()  # type: ignore[misc]
        for image_id, entry in content.get("objects", {}).items():
            image = entry.get("image") or {}
            image["info"] = readable(image.get("info", {}), IMAGE_FIELDS, f"image {image_id}")
            for tag, label in (entry.get("labels") or {}).items():
                label["info"] = readable(label.get("info", {}), LABEL_FIELDS, f"label {image_id}/{tag}")
        return content

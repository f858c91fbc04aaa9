"""Parsing option values that arrive as strings (MONAI Label --conf, request JSON, CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

TRUE_WORDS = ("1", "true", "yes", "on")


def parse_bool(value: Any) -> bool:
    """True for booleans that are True and for the words 1/true/yes/on (any case)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE_WORDS

NONE_WORDS = ("", "none", "null")
ConfigT = TypeVar("ConfigT")


def coerce(value: Any, annotation: str) -> Any:
    """Convert a string option to the first type named in a field annotation such as 'int | None'."""
    kind = annotation.split("|")[0].strip()
    if kind == "bool":
        return parse_bool(value)
    if kind in ("int", "float", "str"):
        return {"int": int, "float": float, "str": str}[kind](value)
    return value


def dataclass_from_mapping(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Build dataclass ``cls`` from option strings: unknown keys are ignored, empty/'none' keep the default."""
    kwargs: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        value = values.get(item.name)
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            continue
        kwargs[item.name] = coerce(value, str(item.type))
    return cls(**kwargs)

"""Parsing option values that arrive as strings (MONAI Label --conf, request JSON, CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from plaid.errors import PlaidInputError

TRUE_WORDS = ("1", "true", "yes", "on")


FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(value: Any) -> bool:
    """True for booleans that are True and for the words 1/true/yes/on (any case)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE_WORDS


def strict_bool(value: Any) -> bool:
    """A boolean option: True/False or one of the words 1/true/yes/on, 0/false/no/off; else ValueError."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"expected true or false, got {value!r}")
    return word in TRUE_WORDS

NONE_WORDS = ("", "none", "null")
ConfigT = TypeVar("ConfigT")


def coerce(value: Any, annotation: str) -> Any:
    """Convert a string option to the first type named in a field annotation such as 'int | None'."""
    kind = annotation.split("|")[0].strip()
    if kind == "bool":
        return strict_bool(value)
    if kind == "int":
        return whole_number(value)
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind == "str":
        if isinstance(value, (bool, list, dict)):
            raise ValueError(f"expected text, got {type(value).__name__}")
        return str(value)
    return value


def whole_number(value: Any) -> int:
    """An integer option: an int, a float with no fractional part, or a string of digits; else ValueError
    (2.5 is not quietly cut to 2, and true is not 1)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def unknown_choice(name: str, value: Any, known: Iterable[str]) -> str | None:
    """``name=value is unknown (known: ...)`` when ``value`` is not one of ``known``, else None."""
    known = tuple(known)
    return None if value in known else f"{name}={value!r} is unknown (known: {', '.join(known)})"


def require_choice(name: str, value: str, known: Iterable[str]) -> str:
    """``value`` when it is one of ``known``, else ValueError with `unknown_choice`'s message."""
    problem = unknown_choice(name, value, known)
    if problem:
        raise ValueError(problem)
    return value


def dataclass_from_mapping(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Build dataclass ``cls`` from option strings: unknown keys are ignored, empty/'none' keep the default."""
    kwargs: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        value = values.get(item.name)
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            continue
        try:
            kwargs[item.name] = coerce(value, str(item.type))
        except (TypeError, ValueError) as exc:
            kind = str(item.type).split("|")[0].strip()
            raise PlaidInputError(f"option {item.name} must be {kind}, got {value!r} ({exc})") from None
    return cls(**kwargs)

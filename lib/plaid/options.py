"""Parsing option values that arrive as strings (MONAI Label --conf, request JSON, CLI)."""

from __future__ import annotations

from typing import Any

TRUE_WORDS = ("1", "true", "yes", "on")


def parse_bool(value: Any) -> bool:
    """True for booleans that are True and for the words 1/true/yes/on (any case)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE_WORDS

"""Options: parsing values that arrive as strings (MONAI Label --conf, request JSON, CLI), and the one
description of each option (help, bounds, default) that argparse help and the docs' tables are made from."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
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


# --- Option descriptions: help text, bounds and default live on the dataclass field (`option`), and the
# --- markdown tables of the docs and the argparse help are rendered from them.

HELP = "help"
NOTES = "notes"
BOUNDS = "bounds"
CHOICES = "choices"
SHOWN_DEFAULT = "shown_default"


@dataclass(frozen=True)
class Bounds:
    """The range a numeric option must lie in; ``None`` always passes (the option is unset).

    ``high`` may be a function (computed at each check); ``high_text`` then names it in the docs.
    """

    low: float
    high: float | Callable[[], float]
    low_open: bool = False
    high_open: bool = False
    high_text: str = ""

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is None or a number within the bounds (never NaN or an infinity)."""
        if value is None:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        high = self.high() if callable(self.high) else self.high
        above = self.low < value if self.low_open else self.low <= value
        below = value < high if self.high_open else value <= high
        return above and below

    def text(self) -> str:
        """The bounds in interval notation, e.g. ``(0, 0.1]`` or ``[1, 10000]``."""
        high = self.high_text or (_number(self.high) if not callable(self.high) else "?")
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {high}{')' if self.high_open else ']'}"


def option(default: Any = MISSING, *, help: str, notes: str = "", bounds: Bounds | None = None,
           choices: Iterable[str] = (), shown_default: str = "", default_factory: Any = MISSING) -> Any:
    """A dataclass field that is a user-facing option: its one description (``help``, shown by argparse and
    in the tables; ``notes``, more detail for the tables only), its ``bounds`` (checked by the config's
    ``validate``), its ``choices`` and, where the default is computed, how the tables show it."""
    metadata = {HELP: help, NOTES: notes, BOUNDS: bounds, CHOICES: tuple(choices), SHOWN_DEFAULT: shown_default}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def same_option(cls: type, name: str, default: Any = MISSING, **changes: Any) -> Any:
    """A field described as field ``name`` of dataclass ``cls`` (same help, bounds, default), so a setting that
    two dataclasses hold is described once; ``changes`` replace single metadata entries."""
    source = option_fields(cls)[name]
    metadata = {**source.metadata, **changes}
    if default is MISSING:
        if source.default_factory is not MISSING:
            return field(default_factory=source.default_factory, metadata=metadata)
        default = source.default
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionDoc:
    """One row of an options table: the name, how its default is shown, its range, what it does."""

    name: str
    help: str
    default: str = ""
    bounds: str = ""
    notes: str = ""

    def meaning(self) -> str:
        """The help text followed by the notes."""
        return f"{self.help}. {self.notes}" if self.notes else self.help


def option_fields(cls: type) -> dict[str, Field]:
    """The fields of dataclass ``cls`` that carry an option description, by name."""
    return {item.name: item for item in fields(cls) if HELP in item.metadata}  # type: ignore[arg-type]


def show_value(value: Any) -> str:
    """How a default value is written in the docs and in argparse help (None is 'none', True is 'true')."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _number(value)
    return str(value)


def field_doc(item: Field, name: str | None = None) -> OptionDoc:
    """The table row of one option field (``name`` overrides the field's name); a text default is code."""
    meta = item.metadata
    default = _default(item)
    shown = meta.get(SHOWN_DEFAULT) or (f"`{default}`" if isinstance(default, str) else show_value(default))
    choices = meta.get(CHOICES) or ()
    notes = meta.get(NOTES, "")
    if choices:
        notes = f"One of {', '.join(f'`{choice}`' for choice in choices)}" + (f". {notes}" if notes else "")
    bounds = meta.get(BOUNDS)
    return OptionDoc(name or item.name, meta[HELP], shown, bounds.text() if bounds else "", notes)


def _default(item: Field) -> Any:
    """A field's default value (its factory's result when it has one)."""
    return item.default_factory() if item.default_factory is not MISSING else item.default


def option_docs(cls: type, names: Iterable[str] | None = None) -> list[OptionDoc]:
    """The table rows of dataclass ``cls``'s options (all of them, or ``names`` in that order)."""
    found = option_fields(cls)
    return [field_doc(found[name]) for name in (names if names is not None else found)]


def argparse_help(item: Field) -> str:
    """An option field's help for argparse: its help text, default and range ('%' escaped for argparse)."""
    doc = field_doc(item)
    default = item.metadata.get(SHOWN_DEFAULT) or show_value(_default(item))
    text = f"{doc.help} (default {default}{'; range ' + doc.bounds if doc.bounds else ''})"
    return text.replace("%", "%%").replace("`", "")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table; a '|' inside a cell is escaped."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float) -> str:
    """A number as the docs write it: ints plainly, floats in their shortest form (1e-4 is 0.0001)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:g}" if abs(value) < 1e6 else repr(value)

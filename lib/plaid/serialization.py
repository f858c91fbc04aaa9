"""JSON output that strict readers accept: NaN and infinities become null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of ``value`` with non-finite floats replaced by None and numpy scalars made plain."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` as indented strict JSON."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(value), indent=2, allow_nan=False))
    return path


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; a `PlaidInputError` naming ``what`` and the file otherwise."""
    from plaid.errors import PlaidInputError

    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlaidInputError(f"cannot read {what} ({exc})", path) from exc
    if not isinstance(content, dict):
        raise PlaidInputError(f"{what} is not a JSON object", path)
    return content

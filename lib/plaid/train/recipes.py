"""Training recipes: JSON files of `TrainConfig` values; command-line flags override them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plaid.errors import PlaidInputError
from plaid.train.config import TrainConfig

COMMENT_PREFIX = "_"


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The settings of a recipe file: a JSON object of TrainConfig fields (keys starting with '_' are notes).

    Unknown keys are refused with an error that names them, so a typo never silently trains the paper recipe.
    """
    path = Path(path)
    if not path.is_file():
        raise PlaidInputError("recipe file does not exist", path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlaidInputError(f"recipe is not valid JSON ({exc})", path) from exc
    if not isinstance(content, dict):
        raise PlaidInputError("recipe must be a JSON object of training settings", path)
    known = set(TrainConfig.option_names())
    settings = {key: value for key, value in content.items() if not key.startswith(COMMENT_PREFIX)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise PlaidInputError(f"unknown recipe settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})",
                              path)
    return settings


def config_with_overrides(recipe: str | Path | None, flags: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from a recipe (paper defaults without one) with every flag that was given (not None) on top."""
    values = read_recipe(recipe) if recipe else {}
    values.update({key: value for key, value in flags.items() if value is not None})
    return TrainConfig.from_mapping(values)

"""`--conf recipe FILE`: the app's training defaults come from a recipe file, and --conf keys beside it win."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from plaid.errors import PlaidInputError
from plaid_dev.serving import APP_DIR, DEMO_RECIPE

if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from lib.configs.calcification import Calcification  # noqa: E402


def _configured(model_dir: Path, conf: dict[str, str]) -> Calcification:
    task = Calcification()
    task.init("calcification", str(model_dir), conf, None)
    return task


def test_recipe_sets_training_defaults_and_conf_overrides_it(tmp_path: Path) -> None:
    recipe = json.loads(DEMO_RECIPE.read_text())
    task = _configured(tmp_path, {"recipe": str(DEMO_RECIPE), "epochs": "3"})
    defaults = task.train_defaults
    assert defaults.architecture == recipe["architecture"] != "resnet50"
    assert defaults.input_filter == recipe["input_filter"]
    assert defaults.inserted_positives == recipe["inserted_positives"]
    assert defaults.epochs == 3  # the --conf key, not the recipe's value
    assert task.trainer().config()["epochs"] == 3
    assert _configured(tmp_path, {}).train_defaults.architecture == "resnet50"  # no recipe: the paper's


def test_bad_recipe_is_refused_by_name(tmp_path: Path) -> None:
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(PlaidInputError, match="epochz"):
        _configured(tmp_path, {"recipe": str(typo)})
    with pytest.raises(PlaidInputError, match="does not exist"):
        _configured(tmp_path, {"recipe": str(tmp_path / "missing.json")})
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"architecture": "resnet18", "frozen_layers": 100}))
    with pytest.raises(PlaidInputError, match="frozen_layers"):
        _configured(tmp_path, {"recipe": str(clash)})

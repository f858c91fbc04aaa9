"""Active learning: the strategies' values and picks, the simulation end to end (masks of unpicked films never
read, resumable), and the app's strategy picking the film the simulation's function picks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import plaid.activelearning.pool as pool_module
import plaid.patches.prepared as prepared_module
from plaid.activelearning.curve import label_shares
from plaid.activelearning.pool import HiddenPool, split_test_women
from plaid.activelearning.simulation import Plan, Simulation
from plaid.activelearning.strategies import (
    MIXED,
    RANKED,
    STRATEGIES,
    VALUES_KEY,
    check_strategy,
    film_values,
    pick_films,
)
from plaid.cli import main
from plaid.errors import PlaidInputError
from plaid.infer.predictor import InferConfig
from plaid.io.datalist import load_records
from plaid.synth.datasets import generate_dataset
from plaid.train.config import TrainConfig
from plaid.train.recipes import config_with_overrides

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "plaid"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from lib.activelearning.ranked import DEFAULT_STRATEGY, RankedStrategy  # noqa: E402
from lib.datastore.local import CheckedLocalDatastore  # noqa: E402
from lib.datastore.stored_info import check_image_info  # noqa: E402

TINY = ["--epochs", "1", "--patch-size", "64", "--batch-size", "16", "--architecture", "resnet18",
        "--frozen-layers", "0", "--val-fraction", "0", "--operating-point-normal-women", "1"]


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 small synthetic films of 8 women (about half with calcifications), PNG only."""
    folder = tmp_path_factory.mktemp("al") / "data"
    generate_dataset(folder, 16, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    return folder


def test_film_values_follow_their_definitions() -> None:
    p = np.array([0.1, 0.5, 0.9])
    values = film_values(p, threshold=0.6)
    assert set(values) == set(RANKED)
    assert values["film_score"] == pytest.approx(0.9)
    assert values["near_threshold"] == pytest.approx(1 - 0.3)
    assert values["false_marks"] == pytest.approx(0.1)          # only the 0.9 patch is marked
    assert values["patch_uncertainty"] == pytest.approx(values["film_uncertainty"] * 3)
    assert film_values(np.zeros(0), 0.5)["film_score"] == 0.0


def test_picks_rank_by_value_unscored_last_and_mixed_is_seeded() -> None:
    values = {"a": 0.2, "b": 0.9, "c": None, "d": 0.9}
    rng = np.random.default_rng(0)
    assert pick_films("film_score", ["a", "b", "c", "d"], values, 3, rng) == ["b", "d", "a"]  # ties by id
    assert pick_films("film_score", ["c", "a"], values, 5, rng) == ["a", "c"]
    first = pick_films(MIXED, list("abcdefgh"), values, 4, np.random.default_rng(7))
    assert first == pick_films(MIXED, list("abcdefgh"), values, 4, np.random.default_rng(7))
    assert len(set(first)) == 4
    assert sorted(pick_films("random", list("abc"), {}, 3, rng)) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown active-learning strategy"):
        check_strategy("entropy")


def test_stored_values_are_checked_by_name() -> None:
    assert check_image_info({VALUES_KEY: {"film_score": 0.4}})[VALUES_KEY] == {"film_score": 0.4}
    with pytest.raises(PlaidInputError, match="plaid_al_values has an unknown strategy"):
        check_image_info({VALUES_KEY: {"bogus": 1.0}})
    with pytest.raises(PlaidInputError, match="plaid_al_values.film_score"):
        check_image_info({VALUES_KEY: {"film_score": -1}})


def test_app_strategy_picks_the_film_the_simulation_picks(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for number in range(5):
        Image.fromarray((rng.random((160, 160)) * 4000).astype(np.uint16)).save(studies / f"film{number}.png")
    Image.fromarray(np.zeros((160, 160), np.uint8)).save(studies / "labels" / "final" / "film4.png")
    store = CheckedLocalDatastore(str(studies), min_image_size=128)
    scores = {"film0": 0.31, "film1": 0.77, "film2": None, "film3": 0.77, "film4": 0.99}  # film4 is labelled
    for image_id, value in scores.items():
        if value is not None:
            store.update_image_info(image_id, {VALUES_KEY: film_values(np.array([value]), 0.5)})
    unlabelled = store.get_unlabeled_images()
    expected = pick_films(DEFAULT_STRATEGY, unlabelled, {i: scores[i] for i in unlabelled}, 1,
                          np.random.default_rng(0))
    answer = RankedStrategy(DEFAULT_STRATEGY)({}, store)
    assert answer["id"] == expected[0] == "film1"
    assert answer["value"] == pytest.approx(0.77)


def test_masks_of_unpicked_films_are_never_read(films: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pool_records, test = split_test_women(load_records(films), 0.25, seed=0)
    allowed = {record.label for record in test}
    read: list[str] = []
    original_reveal, original_read = HiddenPool.reveal, prepared_module.read_label_mask

    def reveal(self: HiddenPool, image_ids: list[str]) -> None:
        ids = list(image_ids)
        allowed.update(self._records[i].label for i in ids)   # a film's mask may be read from its pick on
        original_reveal(self, ids)

    def reading(path: str, *args: object, **kwargs: object) -> np.ndarray:
        assert str(path) in allowed, f"mask {path} read before its film was picked"
        read.append(str(path))
        return original_read(path, *args, **kwargs)

    monkeypatch.setattr(HiddenPool, "reveal", reveal)
    monkeypatch.setattr(prepared_module, "read_label_mask", reading)
    monkeypatch.setattr(pool_module, "read_label_mask", reading)
    config = TrainConfig.from_mapping({"epochs": 1, "patch_size": 64, "batch_size": 16, "architecture": "resnet18",
                                       "frozen_layers": 0, "val_fraction": 0.0, "operating_point_normal_women": 1})
    plan = Plan(strategies=("film_score",), seeds=(0,), rounds=1, per_round=2, initial_women=2,
                infer=InferConfig(runtime="torch-fp32"))
    rows = Simulation(pool_records, test, config, plan, tmp_path / "sim").run(progress=False)
    picked = rows[-1]["picked"]
    assert len(picked) == 2 and not set(picked) & set(rows[0]["labelled"])
    unpicked = {r.label for r in pool_records if r.image_id not in rows[-1]["labelled"]}
    assert unpicked and not unpicked & set(read)
    assert {r.label for r in test} <= set(read)             # the test films were scored against their masks


def test_simulation_runs_two_rounds_of_two_strategies_and_two_seeds(films: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "al"
    command = ["simulate-al", str(films), "--out", str(out), "--strategies", "random,film_score", "--seeds", "0,1",
               "--rounds", "2", "--per-round", "2", "--initial-women", "2", "--test-fraction", "0.25",
               "--runtime", "torch-fp32", "--no-progress", *TINY]
    assert main(command) == 0
    curve = json.loads((out / "learning_curve.json").read_text())["rounds"]
    assert len(curve) == 2 * 2 * 3
    test_ids = {r.image_id for r in split_test_women(load_records(films), 0.25, seed=0)[1]}
    for strategy in ("random", "film_score"):
        for seed in (0, 1):
            mine = sorted((r for r in curve if r["strategy"] == strategy and r["seed"] == seed),
                          key=lambda r: r["round"])
            assert [len(r["labelled"]) - len(r["picked"]) for r in mine[1:]] == [len(m["labelled"]) for m in mine[:2]]
            assert all(not set(r["picked"]) & test_ids for r in mine)
            assert set(mine[0]["metrics"]) >= {"image_auc", "froc_0.5", "froc_1", "false_marks_per_film"}
    firsts = {(r["seed"], tuple(r["labelled"])) for r in curve if r["round"] == 0}
    assert len(firsts) == 2                               # round 0 is shared by the strategies of a seed
    assert (out / "learning_curve.png").stat().st_size > 0
    assert "| film_score |" in (out / "summary.md").read_text()
    assert set(label_shares(curve, "image_auc")) == {"random", "film_score"}

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr("plaid.activelearning.simulation.train_from_records", no_training)
    assert main(command) == 0                             # resumed: every round is read back
    assert json.loads((out / "learning_curve.json").read_text())["rounds"] == curve


def test_every_strategy_is_known_to_the_command() -> None:
    for name in STRATEGIES:
        assert check_strategy(name) == name


def test_simulation_recipe_is_valid() -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "mini-mias-al.json"
    config = config_with_overrides(recipe, {}).validate()
    assert config.architecture == "resnet18" and not config.tta_flips

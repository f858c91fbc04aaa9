"""Recipes (JSON settings overridden by flags) and patient-split cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plaid.cli import build_parser, main
from plaid.commands.train import config_from_args
from plaid.errors import PlaidInputError
from plaid.evaluate.crossval import (
    FROC_METRICS,
    ScoredFoldImage,
    film_results,
    fold_metrics,
    paper_auc_draws,
    paper_sample,
    patient_folds,
    pooled_patches,
)
from plaid.io.datalist import CaseRecord, load_records
from plaid.synth.datasets import generate_dataset
from plaid.train.recipes import config_with_overrides, read_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 small synthetic images of 4 patients (3 with calcifications), PNG only."""
    folder = tmp_path_factory.mktemp("recipe") / "data"
    generate_dataset(folder, 8, seed=3, height=256, width=192, formats=("png",), calcified_fraction=0.7,
                     max_clusters=1)
    return folder


def test_recipe_values_apply_and_flags_override_them(tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"_about": "notes are allowed", "epochs": 7, "patch_size": 64,
                                  "negative_ratio": 3, "class_weighted_loss": True}))
    args = build_parser().parse_args(["train", "data", "--out", "o", "--recipe", str(recipe), "--epochs", "2",
                                      "--negative-ratio", "1.5"])
    config = config_from_args(args)
    assert (config.epochs, config.negative_ratio) == (2, 1.5)          # flags win
    assert config.patch_settings.patch_size == 64 and config.class_weighted_loss is True  # the recipe fills the rest
    assert config.learning_rate == 1e-4                                  # paper default where neither speaks
    plain = config_from_args(build_parser().parse_args(["train", "data", "--out", "o"]))
    assert (plain.epochs, plain.patch_settings.patch_size, plain.negative_ratio) == (120, 224, 1.0)
    switched_off = config_from_args(build_parser().parse_args(["train", "data", "--out", "o", "--recipe", str(recipe),
                                                               "--no-class-weighted-loss"]))
    assert switched_off.class_weighted_loss is False and switched_off.epochs == 7  # a recipe's true turned off


def test_recipe_refuses_unknown_settings(tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"epochs": 3, "negativ_ratio": 2}))
    with pytest.raises(PlaidInputError, match="negativ_ratio"):
        read_recipe(recipe)
    recipe.write_text("[1, 2]")
    with pytest.raises(PlaidInputError, match="JSON object"):
        read_recipe(recipe)


def test_shipped_recipe_is_valid() -> None:
    settings = read_recipe(REPO / "recipes" / "mini-mias.json")
    assert settings["patch_size"] < 224
    config_with_overrides(REPO / "recipes" / "mini-mias.json", {}).validate()  # its options fit together


def test_train_with_recipe_records_the_merged_config(tiny_data: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"epochs": 5, "patch_size": 64, "batch_size": 16, "frozen_layers": 100,
                                  "inserted_positives": 4, "negative_ratio": 2, "class_weighted_loss": True}))
    out = tmp_path / "model"
    assert main(["train", str(tiny_data), "--out", str(out), "--recipe", str(recipe), "--epochs", "1",
                 "--no-progress"]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["epochs"] == 1 and saved["patch_size"] == 64 and saved["inserted_positives"] == 4
    assert saved["initialisation"] == "random" and saved["frozen_layers_applied"] == 0
    history = json.loads((out / "history.json").read_text())
    labelled = json.loads((out / "patch_labels.json").read_text())
    split = json.loads((out / "split.json").read_text())
    trained = {item["image_id"] for item in split["train"]}
    positives = sum(len(labelled[image]["positive_patches"]) for image in trained)
    assert history[0]["train_patches"] == (positives + 4) * 3   # real + inserted positives, twice as many negatives


def test_folds_never_share_a_patient_and_spread_the_calcified() -> None:
    records = [CaseRecord(image=f"p{p}_{view}.png", patient_id=f"P{p}") for p in range(23) for view in ("cc", "mlo")]
    positive = {f"P{p}" for p in range(0, 23, 4)}  # 6 calcified patients
    folds = patient_folds(records, 5, seed=1, positive_groups=positive)
    patients = [{r.patient_id for r in fold} for fold in folds]
    assert sum(len(fold) for fold in folds) == len(records)
    for first in range(5):
        for second in range(first + 1, 5):
            assert not patients[first] & patients[second]
    assert all(len(group & positive) >= 1 for group in patients)
    assert max(len(g) for g in patients) - min(len(g) for g in patients) <= 1
    assert patient_folds(records, 5, seed=1, positive_groups=positive) == folds   # seeded
    with pytest.raises(PlaidInputError, match="folds"):
        patient_folds(records, 24)


def test_crossval_command_reports_mean_and_sd_per_metric(tiny_data: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # an exported runtime has a fixed patch size: the fold predictor must export at the recipe's 64, not 224
    monkeypatch.setenv("PLAID_RUNTIME", "onnxruntime")
    out = tmp_path / "cv"
    assert main(["crossval", str(tiny_data), "--out", str(out), "--folds", "2", "--epochs", "1",
                 "--patch-size", "64", "--batch-size", "16", "--val-fraction", "0", "--no-progress"]) == 0
    report = json.loads((out / "crossval.json").read_text())
    assert list(report)[:2] == ["pooled", "summary"]
    assert list(report["summary"])[:5] == [*FROC_METRICS, "image_auc"]   # the FROC and image AUC lead
    assert set(report["summary"]) >= {"paper_auc", "realistic_auc", "image_auc", "fp_per_image",
                                      "brightness_paper_auc", "brightness_image_auc"}
    pooled = report["pooled"]
    assert [item["fp_per_film"] for item in pooled["froc"]] == [0.25, 0.5, 1.0, 2.0]
    assert pooled["films"] == sum(fold["test_images"] for fold in report["folds"]) and pooled["regions"] > 0
    assert pooled["bootstrap"]["unit"] == "patient" and pooled["image_auc"]["resamples"] > 0
    assert all(set(item) == {"mean", "sd", "folds"} for item in report["summary"].values())
    held = [set(fold["test_patients"]) for fold in report["folds"]]
    assert len(held) == 2 and not held[0] & held[1]
    assert held[0] | held[1] == {r.group for r in load_records(tiny_data)}
    assert report["config"]["patch_size"] == 64 and report["timing"]["process_cpu_s"] > 0
    for fold in report["folds"]:
        films = fold["films"]
        assert len(films) == fold["test_images"] and sum(f["calcified"] for f in films) == fold["test_calcified_images"]
        assert all(0.0 <= f["image_score"] <= 1.0 for f in films)


def _scored(image_id: str, probabilities: list[float], brightness: list[float], labels: list[bool],
            calcified: bool) -> ScoredFoldImage:
    size = len(probabilities)
    return ScoredFoldImage(image_id, np.array(probabilities), np.ones(size, dtype=bool), np.array(labels),
                           calcified, np.array(brightness))


def test_brightness_baseline_scores_the_same_patches_by_mean_intensity() -> None:
    # the model ranks the calcified patches perfectly; brightness ranks them last (they sit in fatty tissue)
    images = [
        _scored("calcified", [0.9, 0.8, 0.1, 0.2], [0.2, 0.3, 0.8, 0.9], [True, True, False, False], True),
        _scored("normal", [0.3, 0.1, 0.2, 0.1], [0.95, 0.7, 0.6, 0.5], [False] * 4, False),
    ]
    metrics = fold_metrics(images, threshold=0.5, seed=0)
    assert metrics["paper_auc"] == 1.0 and metrics["image_auc"] == 1.0
    assert metrics["brightness_paper_auc"] == 0.0
    assert metrics["brightness_image_auc"] == 0.0  # the normal film holds the brightest patch
    flipped = [_scored(i.image_id, list(i.brightness), list(i.probabilities), list(i.labels), i.calcified)
               for i in images]
    assert fold_metrics(flipped, threshold=0.5, seed=0)["brightness_paper_auc"] == 1.0


def test_film_rows_name_each_films_score_top_patch_and_marks() -> None:
    images = [
        _scored("calcified", [0.9, 0.4, 0.7, 0.2], [0.5] * 4, [True, True, False, False], True),
        _scored("normal", [0.3, 0.6, 0.2, 0.55], [0.5] * 4, [False] * 4, False),
    ]
    calcified, normal = film_results(images, threshold=0.5)
    assert calcified == {"image_id": "calcified", "calcified": True, "image_score": 0.9, "top_patch": 0,
                         "calcified_patches": 2, "calcified_patches_found": 1, "false_patches": 1}
    assert normal["image_score"] == 0.6 and normal["top_patch"] == 1 and normal["false_patches"] == 2
    spread = ScoredFoldImage("spread", np.array([0.1, 0.8]), np.array([True, False]), None, True, np.zeros(2))
    row = film_results([spread], threshold=0.5)[0]   # image-level truth only: no patch counts; non-tissue ignored
    assert row["image_score"] == 0.1 and row["calcified_patches"] is None and row["false_patches"] == 0


def test_paper_protocol_draws_every_calcified_patch_and_average_to_the_realistic_auc() -> None:
    # one film of 3 calcified and 197 normal tissue patches, plus a non-tissue calcified patch scoring 0
    rng = np.random.default_rng(5)
    probabilities = rng.random(201)
    labels = np.zeros(201, dtype=bool)
    labels[[3, 50, 120, 200]] = True
    tissue = np.ones(201, dtype=bool)
    tissue[200] = False
    images = [ScoredFoldImage("film", probabilities, tissue, labels, True, np.zeros(201))]
    pooled_labels, pooled_scores = pooled_patches(images)
    assert pooled_labels.sum() == 4 and len(pooled_labels) == 201 and pooled_scores[-1] == 0.0
    chosen = paper_sample(pooled_labels, np.random.default_rng(0))
    assert set(np.flatnonzero(pooled_labels)) <= set(chosen.tolist())
    assert len(set(chosen.tolist())) == 8 and pooled_labels[chosen].sum() == 4
    draws = paper_auc_draws(images, 3000, seed=0)
    realistic = fold_metrics(images, threshold=0.5, seed=0)["realistic_auc"]
    assert np.std(draws) > 0.05  # one draw is luck with 4 calcified patches...
    assert abs(np.mean(draws) - realistic) < 0.01  # ...but the draws average to the realistic AUC


def test_fold_metrics_lead_with_region_sensitivity_per_false_patches_per_film() -> None:
    # film 1: regions scoring 0.9 and 0.4, normal patches 0.8 and 0.3; film 2 (normal): normal patches 0.7, 0.6
    calcified = ScoredFoldImage("c", np.array([0.9, 0.4, 0.8, 0.3]), np.ones(4, dtype=bool),
                                np.array([True, True, False, False]), True, np.zeros(4), np.array([0.9, 0.4]), "A")
    normal = ScoredFoldImage("n", np.array([0.7, 0.6]), np.ones(2, dtype=bool), np.zeros(2, dtype=bool), False,
                             np.zeros(2), np.zeros(0), "B")
    metrics = fold_metrics([calcified, normal], threshold=0.5, seed=0)
    # 2 films: 0.25 -> 0 false patches allowed, 0.5 -> 1 (0.8), 1 -> 2 (0.7), 2 -> 4 (all four, down to 0.3)
    assert [metrics[name] for name in FROC_METRICS] == [0.5, 0.5, 0.5, 1.0]
    assert metrics["region_sensitivity_at_threshold"] == 0.5 and metrics["fp_per_image"] == 1.5
    assert calcified.film().negatives.tolist() == [0.8, 0.3] and calcified.film().score == 0.9

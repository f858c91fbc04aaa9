"""Unit tests of the evaluation helpers: FROC, bootstrap, balanced paper set, age table, overlay, test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plaid.errors import PlaidInputError
from plaid.evaluate.bootstrap import bootstrap_metrics
from plaid.evaluate.froc import froc_curve, region_scores
from plaid.evaluate.overlays import PREDICTION_COLOUR, render_overlay
from plaid.evaluate.plots import plot_training_curves
from plaid.evaluate.protocols import age_table, paper_rows, parse_age_groups
from plaid.evaluate.scoring import PatchTable
from plaid.io.datalist import CaseRecord
from plaid.metrics import roc_auc
from plaid.patches.grid import PatchGrid
from plaid.patches.labels import patch_labels_from_mask
from plaid.patches.regions import calcification_regions
from plaid.patches.sampling import PatchIndex
from plaid.train.holdout import holdout_split, records_in_part, select_test_records


def test_a_region_counts_once_and_takes_the_best_patch_it_touches() -> None:
    grid = PatchGrid(448, 448)
    mask = np.zeros((448, 448), dtype=np.uint8)
    mask[100:104, 220:230] = 1  # one region across patches 0 and 1
    mask[300, 300] = 1  # a single-pixel region in patch 3
    scores = np.array([0.2, 0.9, 0.5, 0.1])
    labels = patch_labels_from_mask(mask, grid)
    np.testing.assert_allclose(region_scores(mask, grid, scores, labels, spacing_mm=0.07), [0.9, 0.1])
    assert region_scores(np.zeros((448, 448)), grid, scores, labels).size == 0


def test_specks_within_the_cluster_gap_are_one_region_and_farther_ones_are_two() -> None:
    mask = np.zeros((600, 600), dtype=np.uint8)
    for col in (100, 125, 150, 175):  # a chain of specks 25 px apart: 2.5 mm at 0.1 mm, 5 mm at 0.2 mm
        mask[100:102, col:col + 2] = 1
    mask[400:402, 400:402] = 1  # a lone speck far from the chain
    assert calcification_regions(mask, spacing_mm=0.1)[1] == 2  # the chain is one cluster under the 4 mm rule
    assert calcification_regions(mask, spacing_mm=0.1, cluster_gap_mm=2.0)[1] == 5
    assert calcification_regions(mask, spacing_mm=0.2)[1] == 5  # the same pixels 5 mm apart: single specks
    assert calcification_regions(mask, spacing_mm=0.1, cluster_gap_mm=0)[1] == 5  # 0: every speck counts alone
    regions, _ = calcification_regions(mask, spacing_mm=0.1)
    assert len(np.unique(regions[100:102, 100:177])) == 2  # the chain's pixels share one number (and 0 between)
    assert regions[400, 400] not in (0, regions[100, 100])


def test_one_label_rule_decides_hits_and_false_positives() -> None:
    grid = PatchGrid(448, 448)
    mask = np.zeros((448, 448), dtype=np.uint8)
    mask[220:224, 100:104] = 1  # 16 pixels in patch 0: a sliver of its area
    scores = np.array([0.9, 0.0, 0.0, 0.0])
    labels = patch_labels_from_mask(mask, grid, min_overlap=0.01)
    assert not labels[0]  # below min_overlap: labelled normal, so it is a false positive when marked ...
    assert region_scores(mask, grid, scores, labels).tolist() == [-np.inf]  # ... and never also a hit
    labels = patch_labels_from_mask(mask, grid)
    assert region_scores(mask, grid, scores, labels).tolist() == [0.9]


def test_froc_curve_counts_regions_and_false_positives_per_image() -> None:
    curve = froc_curve(np.array([0.9, 0.1]), np.array([0.5, 0.3]), images=2)
    assert curve.at_threshold(0.95) == (0.0, 0.0)
    assert curve.at_threshold(0.5) == (0.5, 0.5)
    assert curve.at_threshold(0.1) == (1.0, 1.0)
    assert curve.sensitivity_at_rates((0.125, 1.0)) == {"0.125": 0.5, "1": 1.0}
    assert np.all(np.diff(curve.fp_per_image) >= 0) and np.all(np.diff(curve.sensitivity) >= 0)


def test_bootstrap_is_seeded_and_resamples_whole_patients() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 50)
    scores = labels * 0.3 + rng.random(100)
    groups = np.repeat([f"P{i}" for i in range(10)], 10)
    first = bootstrap_metrics(groups, labels, scores, 0.6, iterations=100, seed=3)
    assert first == bootstrap_metrics(groups, labels, scores, 0.6, iterations=100, seed=3)
    assert first.groups == 10 and first.auc_resamples == 100
    assert first.auc[0] <= roc_auc(labels, scores) <= first.auc[1]
    single = bootstrap_metrics(np.zeros(100), labels, scores, 0.6, iterations=20, seed=0)
    assert single.auc[0] == pytest.approx(single.auc[1]) == pytest.approx(roc_auc(labels, scores))
    only_negatives = bootstrap_metrics(groups, np.zeros(100), scores, 0.6, iterations=10)
    assert only_negatives.auc_resamples == 0 and np.isnan(only_negatives.auc[0])


def _table(ages: list[float | None]) -> PatchTable:
    """Three images of 10 patches each: patches 0-2 calcified, 0-7 tissue; image i is aged ages[i]."""
    labels = [np.arange(10) < 3 for _ in ages]
    tissue = [np.arange(10) < 8 for _ in ages]
    index = PatchIndex.from_images(labels, tissue)
    probability = np.linspace(0, 1, len(index))
    owner_age = np.array([np.nan if a is None else a for a in ages])
    return PatchTable(index=index, probability=probability, tissue=np.ones(len(index), bool),
                      groups=np.array([f"P{i}" for i in index.image], dtype=object), ages=owner_age[index.image])


def test_paper_set_is_balanced_seeded_and_honours_pairs() -> None:
    table = _table([40, 50, 70])
    rows = paper_rows(table, seed=1)
    assert table.labels[rows].sum() == 9 == (table.labels[rows] == 0).sum()
    np.testing.assert_array_equal(rows, paper_rows(table, seed=1))
    assert not np.array_equal(rows, paper_rows(table, seed=2))
    pairs = paper_rows(table, seed=1, pairs=4)
    assert len(pairs) == 8 and table.labels[pairs].sum() == 4
    assert len(paper_rows(table, seed=1, pairs=50)) == 9 + 15  # fewer available than asked


def test_age_table_counts_add_up_with_an_unknown_row() -> None:
    table = _table([40, 50, None])
    rows = paper_rows(table, seed=0)
    image_ids = np.array([f"I{i}" for i in table.index.image], dtype=object)
    groups = parse_age_groups("31-45, 46-60,61-75")
    out = age_table(table, rows, table.probability[rows], image_ids, 0.5, groups)
    assert [g["age_group"] for g in out] == ["31-45", "46-60", "61-75", "other/unknown"]
    assert sum(g["patches"] for g in out) == len(rows)
    assert out[2]["patches"] == 0 and np.isnan(out[2]["accuracy"])
    assert all(g["images"] <= 1 for g in out)


@pytest.mark.parametrize("text", ["", "31-", "45-31", "a-b", "31"])
def test_bad_age_groups_are_rejected(text: str) -> None:
    with pytest.raises(PlaidInputError):
        parse_age_groups(text)


def test_overlay_shows_truth_and_prediction_side_by_side(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).normal(1000, 50, (2000, 1500)).astype(np.float32)
    truth = np.zeros(pixels.shape, dtype=np.uint8)
    truth[1000, 700] = 1  # one pixel must stay visible after downscaling
    single = render_overlay(pixels, [[0, 0, 224, 224]], tmp_path / "one.png", max_side=500)
    double = render_overlay(pixels, truth.astype(bool), tmp_path / "two.png", ground_truth=truth, title="t",
                            max_side=500)
    with Image.open(single) as one, Image.open(double) as two:
        assert two.width > 2 * one.width - 20
        left = np.asarray(two)[:, : two.width // 2]
        green = (left[..., 1] > 180) & (left[..., 0] < 120)
        assert green.any()
        assert (np.asarray(one)[..., :3] == PREDICTION_COLOUR).all(axis=-1).any()
    with pytest.raises(ValueError):
        render_overlay(pixels, np.zeros((10, 10)), tmp_path / "bad.png")


def test_training_curves_png(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 10,
                "val_accuracy": None} for e in (1, 2, 3)]
    with Image.open(plot_training_curves(history, tmp_path / "curves.png")) as picture:
        assert picture.width > picture.height


def _records(patients: int, per_patient: int = 2) -> list[CaseRecord]:
    return [CaseRecord(image=f"/d/P{p}_{v}.png", patient_id=f"P{p}") for p in range(patients)
            for v in range(per_patient)]


def test_holdout_is_by_patient_and_reproducible() -> None:
    records = _records(6)
    rest, test = holdout_split(records, 0.34, seed=4)
    assert {r.group for r in rest}.isdisjoint({r.group for r in test}) and len(test) == 2 * 3
    assert [r.image_id for r in holdout_split(_records(6), 0.34, seed=4)[1]] == [r.image_id for r in test]
    with pytest.raises(PlaidInputError):
        holdout_split(_records(1), 0.5)


def test_test_selection_excludes_training_patients_and_reads_split_files(tmp_path: Path) -> None:
    records = _records(4)
    model_split = tmp_path / "split.json"
    model_split.write_text(json.dumps({"train": [{"image_id": "P0_0", "patient_id": "P0"}],
                                       "validation": [{"image_id": "P1_0", "patient_id": "P1"}]}))
    unseen = select_test_records(records, model_split=model_split)
    assert {r.group for r in unseen.records} == {"P2", "P3"} and unseen.overlap == []
    everything = select_test_records(records, model_split=model_split, use_all=True)
    assert everything.overlap == ["P0", "P1"]
    listed = tmp_path / "test.json"
    listed.write_text(json.dumps({"test": [{"image_id": "P3_1"}, {"image_id": "gone"}]}))
    chosen = select_test_records(records, split_file=listed)
    assert [r.image_id for r in chosen.records] == ["P3_1"] and chosen.missing == ["gone"]
    assert records_in_part(records, {"test": [{"image": "/elsewhere/P2_0.png"}]}, "test")[0][0].image_id == "P2_0"
    model_split.write_text(json.dumps({"train": [{"image_id": r.image_id, "patient_id": r.patient_id}
                                                 for r in records]}))
    with pytest.raises(PlaidInputError):
        select_test_records(records, model_split=model_split)


def test_report_without_any_calcification_is_still_written(tmp_path: Path) -> None:
    import torch

    from plaid.evaluate.run import EvalConfig, evaluate
    from plaid.infer.predictor import InferConfig, PatchPredictor
    from plaid.io.datalist import load_records
    from plaid.model.checkpoint import save_checkpoint
    from plaid.model.network import build_model
    from plaid.synth.datasets import generate_dataset

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", build_model(pretrained=False), threshold=0.5)
    generate_dataset(tmp_path / "data", 2, seed=0, height=448, width=448, calcified_fraction=0.0)
    predictor = PatchPredictor(checkpoint, InferConfig(batch_size=8))
    selection = select_test_records(load_records(tmp_path / "data"), use_all=True)
    result = evaluate(selection, predictor, tmp_path / "report",
                      EvalConfig(bootstrap=5, overlays=1, progress=False))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["paper_protocol"]["patches"] == 0 and report["paper_protocol"]["auc"] is None
    assert report["realistic_protocol"]["positives"] == 0 and report["realistic_protocol"]["froc"]["regions"] == 0
    assert report["files"]["roc_paper"] is None and (tmp_path / "report" / "froc.png").is_file()
    assert "0 calcified + 0 normal patches" in Path(result.files["report_md"]).read_text()


def test_overlays_draw_on_the_prepared_images_without_reading_files_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from PIL import Image

    from plaid.evaluate.run import EvalConfig, evaluate
    from plaid.infer.predictor import InferConfig, PatchPredictor
    from plaid.io.datalist import load_records
    from plaid.model.checkpoint import save_checkpoint
    from plaid.model.network import build_model
    from plaid.patches import prepared
    from plaid.synth.datasets import generate_dataset

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", build_model(pretrained=False), threshold=0.5)
    generate_dataset(tmp_path / "data", 3, seed=2, height=448, width=672, calcified_fraction=1.0)
    records = load_records(tmp_path / "data")
    reads: list[str] = []
    real_read = prepared.read_mammogram

    def counted(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(prepared, "read_mammogram", counted)
    predictor = PatchPredictor(checkpoint, InferConfig(batch_size=8))
    result = evaluate(select_test_records(records, use_all=True), predictor, tmp_path / "report",
                      EvalConfig(bootstrap=0, overlays=2, progress=False))
    assert sorted(reads) == sorted(Path(record.image).name for record in records)  # each image read once
    calcified = {row["image_id"]: row["patches_calcified"] for row in result.report["per_image"]}
    most = sorted(calcified, key=lambda image_id: -calcified[image_id])[:2]
    assert [Path(path).stem for path in result.files["overlays"]] == most
    with Image.open(result.files["overlays"][0]) as picture:
        assert picture.size[0] > 2 * 672 * 0.9  # two full-size panels side by side


def _films() -> list:
    from plaid.evaluate.headline import FilmScores

    def film(patient: str, regions: list[float], negatives: list[float], calcified: bool) -> FilmScores:
        return FilmScores(patient, np.array(regions), np.array(negatives), calcified,
                          max([*regions, *negatives]))

    # 4 films, 3 calcified regions; normal patches ranked 0.8 0.7 0.6 0.3 0.2 0.1 0.1 0.05
    return [film("A", [0.9, 0.4], [0.8, 0.3, 0.2], True), film("B", [], [0.7, 0.6, 0.1], False),
            film("C", [0.5], [0.1], True), film("D", [], [0.05], False)]


def test_headline_figures_have_known_values_on_a_tiny_case() -> None:
    from plaid.evaluate.headline import headline_figures

    figures = headline_figures(_films(), threshold=0.5, iterations=0)
    # 1 false patch allowed (0.25 x 4 films): threshold 0.8 finds the 0.9 region only; 2 allowed: still only
    # that one (0.7 is the 2nd false patch, 0.6 the 3rd); 4 allowed: threshold 0.3 finds all three
    assert [item["fp_per_film"] for item in figures["froc"]] == [0.25, 0.5, 1.0, 2.0]
    assert [item["value"] for item in figures["froc"]] == pytest.approx([1 / 3, 1 / 3, 1.0, 1.0])
    assert figures["image_auc"]["value"] == pytest.approx(0.75)  # 0.5 ranks below the normal 0.7
    at = figures["at_threshold"]
    assert at["threshold"] == 0.5
    assert at["false_marks_per_film"]["value"] == pytest.approx(3 / 4)   # 0.8, 0.7, 0.6
    assert at["region_sensitivity"]["value"] == pytest.approx(2 / 3)     # 0.9 and 0.5 (at the threshold)
    assert at["calcified_films_marked"]["value"] == 1.0 and at["normal_films_marked"]["value"] == 0.5
    assert (figures["films"], figures["calcified_films"], figures["regions"], figures["patients"]) == (4, 2, 3, 4)
    assert figures["image_auc"]["interval"] == [None, None]  # no resample asked for


def test_headline_intervals_resample_whole_patients() -> None:
    from dataclasses import replace

    from plaid.evaluate.headline import headline_figures

    one_woman = [replace(film, patient="same") for film in _films()]
    figures = headline_figures(one_woman, threshold=0.5, iterations=50, seed=3)
    for entry in (*figures["froc"], figures["image_auc"], figures["at_threshold"]["false_marks_per_film"]):
        assert entry["interval"] == [pytest.approx(entry["value"])] * 2 and entry["resamples"] == 50
    spread = headline_figures(_films(), threshold=0.5, iterations=300, seed=3)
    assert spread == headline_figures(_films(), threshold=0.5, iterations=300, seed=3)   # seeded
    low, high = spread["froc"][2]["interval"]
    assert low < spread["froc"][2]["value"] <= high   # a resample without patient C's region can miss A's 0.4
    assert spread["image_auc"]["resamples"] < 300      # resamples with one class only are left out
    assert spread["bootstrap"]["unit"] == "patient"
    assert "at_threshold" not in headline_figures(_films(), threshold=None, iterations=0)


def test_report_leads_with_froc_and_image_auc_then_the_paper_protocol(tmp_path: Path) -> None:
    import torch

    from plaid.evaluate.run import EvalConfig, evaluate
    from plaid.infer.predictor import InferConfig, PatchPredictor
    from plaid.io.datalist import load_records
    from plaid.model.checkpoint import save_checkpoint
    from plaid.model.network import build_model
    from plaid.synth.datasets import generate_dataset

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", build_model(pretrained=False), threshold=0.5,
                                 operating_point="false_marks", max_false_marks_per_image=1.0,
                                 validation_false_marks_per_image=0.8)
    generate_dataset(tmp_path / "data", 4, seed=2, height=448, width=448, calcified_fraction=0.5)
    predictor = PatchPredictor(checkpoint, InferConfig(batch_size=8))
    result = evaluate(select_test_records(load_records(tmp_path / "data"), use_all=True), predictor,
                      tmp_path / "report", EvalConfig(bootstrap=20, overlays=0, progress=False))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert next(iter(report)) == "headline"
    headline, real = report["headline"], report["realistic_protocol"]
    rates = real["froc"]["sensitivity_at_fp_per_image"]
    assert [item["value"] for item in headline["froc"]] == [rates[key] for key in ("0.25", "0.5", "1", "2")]
    assert headline["image_auc"]["value"] == real["image_level"]["auc"]
    at = headline["at_threshold"]
    assert at["false_marks_per_film"]["value"] == pytest.approx(real["false_positive_patches_per_image"])
    assert at["region_sensitivity"]["value"] == pytest.approx(real["froc"]["at_threshold"]["sensitivity"])
    assert at["checkpoint"] == {"operating_point": "false_marks", "max_false_marks_per_image": 1.0,
                                "validation_false_marks_per_image": 0.8}
    assert "at most 1 false marks per validation film" in at["source"]
    markdown = Path(result.files["report_md"]).read_text()
    order = [markdown.index(title) for title in ("## FROC and image AUC", "region sensitivity", "Image AUC",
                                                 "### The stored operating point", "## Paper protocol",
                                                 "## Realistic protocol")]
    assert order == sorted(order)
    assert "`validation_false_marks_per_image` = 0.8" in markdown

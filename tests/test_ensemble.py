"""Ensembles of seeds: `plaid ensemble` stores several members in one checkpoint, and the predictor (app, `plaid
infer`, `plaid evaluate`) serves the mean of their probabilities with a threshold chosen for that mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from plaid.cli import main
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import load_records
from plaid.metrics import false_marks_threshold
from plaid.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from plaid.model.description import describe_checkpoint
from plaid.model.ensemble import EnsembleClassifier
from plaid.model.network import PatchClassifier
from plaid.synth.datasets import generate_dataset

FAST = ["--batch-size", "16", "--no-progress"]


def _member(path: Path, seed: int, threshold: float, patch_size: int = 64, tta_flips: bool = True) -> Path:
    torch.manual_seed(seed)
    model = PatchClassifier(frozen_layers=0, architecture="resnet18")
    with torch.no_grad():
        model.backbone.fc.bias.fill_(-1.0 + seed)  # members that disagree, so their mean is not either one
    return save_checkpoint(path, model, threshold=threshold, epoch=3,
                           patch_settings={"patch_size": patch_size, "stride": None},
                           config={"seed": seed, "patch_size": patch_size, "tta_flips": tta_flips, "epochs": 3})


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("members")
    return [_member(folder / "a.pt", 0, 0.3), _member(folder / "b.pt", 1, 0.5)]


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ensemble-data") / "data"
    generate_dataset(folder, 4, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    return folder


@pytest.fixture(scope="module")
def ensemble(members: list[Path]) -> Path:
    out = members[0].parent / "ensemble.pt"
    assert main(["ensemble", *map(str, members), "--out", str(out)]) == 0
    return out


def _film(films: Path) -> Path:
    return Path(load_records(films)[0].image)


def test_the_ensemble_predicts_the_mean_of_its_members_probabilities(members: list[Path], ensemble: Path,
                                                                      films: Path) -> None:
    from plaid.io.images import read_mammogram

    pixels = read_mammogram(_film(films)).pixels
    config = InferConfig(batch_size=16, runtime="torch-fp32")
    first, second = (PatchPredictor(path, config).predict(pixels) for path in members)
    both = PatchPredictor(ensemble, config)
    mean = both.predict(pixels)
    assert isinstance(both.model()[0], EnsembleClassifier) and both.scoring_config().tta_flips is True
    assert mean.scored.sum() > 4 and not np.allclose(first.probabilities, second.probabilities, atol=0.05)
    np.testing.assert_allclose(mean.probabilities, (first.probabilities + second.probabilities) / 2, atol=1e-5)
    # without --data or --threshold the threshold is the members' mean, and says so
    assert mean.threshold == pytest.approx(0.4)
    meta = both.model()[1]
    assert "mean of the members' thresholds" in meta["threshold_source"]
    assert [m["threshold"] for m in meta["members"]] == [0.3, 0.5] and "state_dict" not in meta["members"][0]
    assert meta["patch_settings"]["patch_size"] == 64 and "seed" not in meta["config"]  # members differ in it
    assert describe_checkpoint(ensemble) == ("ensemble of 2 resnet18 on full-resolution 64x64 patches, "
                                             "operating point 0.40")


def test_exported_runtimes_serve_the_ensemble_as_one_model(ensemble: Path, films: Path) -> None:
    from plaid.io.images import read_mammogram

    pixels = read_mammogram(_film(films)).pixels
    reference = PatchPredictor(ensemble, InferConfig(batch_size=16, runtime="torch-fp32")).predict(pixels)
    exported = PatchPredictor(ensemble, InferConfig(batch_size=16, runtime="onnxruntime"))
    assert exported.runtime().name == "onnxruntime"  # built and agreed with torch, no fallback
    np.testing.assert_allclose(exported.predict(pixels).probabilities, reference.probabilities, atol=1e-4)


def test_plaid_infer_serves_the_mean_probability_map(members: list[Path], ensemble: Path, films: Path,
                                                     tmp_path: Path) -> None:
    maps = []
    for model in (*members, ensemble):
        out = tmp_path / model.stem
        assert main(["infer", str(_film(films)), "--model", str(model), "--out", str(out), "--format", "tif",
                     "--runtime", "torch-fp32", *FAST]) == 0
        maps.append(tifffile.imread(next(out.glob("*_probability.tif"))))
        summary = json.loads((out / "summary.json").read_text())
    np.testing.assert_allclose(maps[2], (maps[0] + maps[1]) / 2, atol=1e-5)
    assert summary["threshold"] == pytest.approx(0.4)


def test_a_threshold_chosen_on_films_holds_its_false_marks_per_film_in_evaluate(
    members: list[Path], films: Path, tmp_path: Path
) -> None:
    out = tmp_path / "chosen.pt"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--data", str(films),
                 "--max-false-marks-per-image", "1", "--runtime", "torch-fp32", *FAST]) == 0
    stored = read_checkpoint(out)
    assert stored["operating_point"] == "false_marks" and stored["max_false_marks_per_image"] == 1.0
    assert stored["operating_point_films"] == 4 and stored["validation_false_marks_per_image"] <= 1.0
    assert not (tmp_path / ".chosen.pt.scoring").exists()
    assert {entry["image_id"] for entry in stored["threshold_films"]} == {r.image_id for r in load_records(films)}
    # the films chose the threshold: evaluate refuses them, and with --all reports them flagged as seen
    assert main(["evaluate", str(films), "--model", str(out), "--out", str(tmp_path / "refused"),
                 "--bootstrap", "10", "--overlays", "0", "--runtime", "torch-fp32", *FAST]) == 2
    report_dir = tmp_path / "report"
    assert main(["evaluate", str(films), "--model", str(out), "--out", str(report_dir), "--all",
                 "--bootstrap", "10", "--overlays", "0", "--runtime", "torch-fp32", *FAST]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["seen_films_included"] and report["split"]["overlap_with_threshold_films"]
    at = report["headline"]["at_threshold"]
    assert at["threshold"] == pytest.approx(stored["threshold"])
    assert at["false_marks_per_film"]["value"] == pytest.approx(stored["validation_false_marks_per_image"])
    assert at["checkpoint"]["operating_point"] == "false_marks" and "chosen for the ensemble" in at["source"]
    # the lowest such threshold: one float32 step lower marks more than one false patch per film
    rows = [r for r in (report_dir / "predictions.csv").read_text().splitlines()[1:]]
    negatives = np.array([float(r.split(",")[12]) for r in rows if r.split(",")[10:12] == ["1", "0"]],
                         dtype=np.float32)
    lower = np.nextafter(np.float32(stored["threshold"]), np.float32(0))
    assert (negatives >= lower).sum() > 4 >= (negatives >= np.float32(stored["threshold"])).sum()


def test_false_marks_threshold_allows_the_given_number_per_film() -> None:
    negatives = np.array([0.9, 0.8, 0.8, 0.3, 0.1], dtype=np.float32)
    assert (negatives >= false_marks_threshold(negatives, 2, 0.5)).sum() == 1   # one allowed on two films
    assert (negatives >= false_marks_threshold(negatives, 2, 1.0)).sum() == 1   # two allowed, but 0.8 is tied
    assert (negatives >= false_marks_threshold(negatives, 2, 1.5)).sum() == 3
    assert false_marks_threshold(negatives, 1, 10) == pytest.approx(0.1)       # every one allowed
    assert (negatives >= false_marks_threshold(negatives, 5, 0)).sum() == 0


def test_members_that_tile_or_score_differently_are_refused(members: list[Path], ensemble: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    other_size = _member(tmp_path / "c.pt", 2, 0.5, patch_size=96)
    no_flips = _member(tmp_path / "d.pt", 2, 0.5, tta_flips=False)
    cases = [([members[0], other_size], "patch_size 96 vs 64"), ([members[0], no_flips], "tta_flips"),
             ([members[0], ensemble], "itself an ensemble"), ([members[0], members[0]], "listed twice"),
             ([members[0]], "at least two")]
    for listed, message in cases:
        caplog.clear()
        assert main(["ensemble", *map(str, listed), "--out", str(tmp_path / "e.pt")]) == 2
        assert message in caplog.text
        assert not (tmp_path / "e.pt").exists()
    assert main(["ensemble", *map(str, members), "--out", str(ensemble)]) == 2  # never overwrites
    assert "exists already" in caplog.text


def test_an_ensemble_checkpoint_loads_with_weights_only(ensemble: Path) -> None:
    model, meta = load_model(ensemble)
    assert isinstance(model, EnsembleClassifier) and len(model.members) == 2 and not model.training
    assert meta["architecture"] == "ensemble"
    with torch.no_grad():
        patches = torch.rand(3, 1, 64, 64)
        expected = torch.stack([torch.sigmoid(m(patches)) for m in model.members]).mean(0)
        torch.testing.assert_close(torch.sigmoid(model(patches)), expected, atol=1e-6, rtol=0)


def test_the_app_infer_task_serves_the_ensemble_mean(members: list[Path], ensemble: Path, films: Path) -> None:
    import sys

    app_dir = Path(__file__).resolve().parents[1] / "apps" / "plaid"
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    from lib.infers.calcification import CalcificationInfer

    request = {"image": str(_film(films)), "label_output": "probability", "result_extension": ".tif"}
    maps, results = [], []
    for model in (*members, ensemble):
        task = CalcificationInfer(PatchPredictor(model, InferConfig(batch_size=16)), {"calcification": 1})
        path, result = task(dict(request))
        maps.append(tifffile.imread(path))
        results.append(result)
        Path(path).unlink()
    np.testing.assert_allclose(maps[2], (maps[0] + maps[1]) / 2, atol=1e-5)
    assert results[2]["threshold"] == pytest.approx(0.4) and results[2]["model"] == "ensemble.pt"

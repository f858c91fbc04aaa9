"""Acceptance tests of `plaid train`, `plaid evaluate` and `plaid infer` on small synthetic mammograms.

The real code paths run end to end (ResNet50 from random weights, CPU): training happens once per module
and the report is checked against an independent recomputation with scikit-learn.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from plaid.cli import main
from plaid.io.datalist import load_records
from plaid.io.labels import read_label_mask, write_label_png
from plaid.model.checkpoint import read_checkpoint
from plaid.synth.datasets import generate_dataset
from plaid.train.holdout import select_test_records

pytestmark = pytest.mark.slow

FAST = ["--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Fast training options: 170 layers frozen, which PLAID allows only for layers loaded from pretrained
    weights, so a (random) torchvision-format weights file stands in for ImageNet's."""
    import torch
    from torchvision.models import resnet50

    weights = tmp_path_factory.mktemp("weights") / "resnet50-stand-in.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    return [*FAST, "--frozen-layers", "170", "--val-fraction", "0.3", "--weights", str(weights)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images of 6 patients (2 without calcifications), 560x448: 3x2 patch grids with edge padding."""
    folder = tmp_path_factory.mktemp("cli") / "data"
    generate_dataset(folder, 12, seed=0, height=560, width=448, calcified_fraction=0.7, max_clusters=2)
    return folder


@pytest.fixture(scope="module")
def model_dir(data_dir: Path) -> Path:
    """`plaid train` with a held-out test split: 2 epochs, batch 8, paper defaults otherwise."""
    out = data_dir.parent / "model"
    assert main(["train", str(data_dir), "--out", str(out), "--epochs", "2", "--test-fraction", "0.5", *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def report_dir(data_dir: Path, model_dir: Path) -> Path:
    """`plaid evaluate` on the test split recorded beside the model."""
    out = data_dir.parent / "report"
    code = main(["evaluate", str(data_dir), "--model", str(model_dir / "best.pt"), "--out", str(out),
                 "--bootstrap", "200", *FAST])
    assert code == 0
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _groups(entries: list[dict]) -> set[str]:
    return {entry.get("patient_id") or f"image:{entry['image_id']}" for entry in entries}


def _rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Accuracy, sensitivity, specificity computed with scikit-learn's confusion matrix."""
    tn, fp, fn, tp = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1]).ravel()
    return (tp + tn) / (tp + tn + fp + fn), tp / (tp + fn), tn / (tn + fp)


def test_train_writes_checkpoints_curves_and_a_patient_disjoint_split(model_dir: Path) -> None:
    for name in ("best.pt", "last.pt", "history.json", "train_config.json", "patch_labels.json",
                 "training_curves.png", "train_summary.json"):
        assert (model_dir / name).is_file(), name
    history = json.loads((model_dir / "history.json").read_text())
    assert [item["epoch"] for item in history] == [1, 2]
    with Image.open(model_dir / "training_curves.png") as picture:
        assert picture.width > 300 and picture.height > 200
    config = json.loads((model_dir / "train_config.json").read_text())
    assert (config["epochs"], config["batch_size"], config["learning_rate"]) == (2, 8, 1e-4)
    split = json.loads((model_dir / "split.json").read_text())
    train, validation, test = _groups(split["train"]), _groups(split["validation"]), _groups(split["test"])
    assert train and test and validation
    assert not (train | validation) & test
    assert not train & validation
    assert split["test_fraction"] == 0.5 and split["test_seed"] == 0
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == 0 and summary["epochs_completed"] == 2
    assert summary["test_images"] == len(split["test"])


def test_evaluate_report_matches_independent_recomputation(report_dir: Path, model_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    rows = _read_csv(report_dir / "predictions.csv")
    threshold = report["threshold"]
    assert threshold == pytest.approx(read_checkpoint(model_dir / "best.pt")["threshold"])
    labels = np.array([int(r["label"]) for r in rows])
    probability = np.array([float(r["probability"]) for r in rows])
    tissue = np.array([int(r["tissue"]) for r in rows], dtype=bool)
    in_paper = np.array([int(r["paper_set"]) for r in rows], dtype=bool)

    # paper protocol: every calcified patch and as many normal ones
    paper = report["paper_protocol"]
    assert paper["positives"] == int(labels.sum()) == int(labels[in_paper].sum())
    assert paper["negatives"] == paper["positives"] == int((labels[in_paper] == 0).sum())
    assert paper["auc"] == pytest.approx(roc_auc_score(labels[in_paper], probability[in_paper]))
    accuracy, sensitivity, specificity = _rates(labels[in_paper], probability[in_paper], threshold)
    assert paper["at_threshold"]["accuracy"] == pytest.approx(accuracy)
    assert paper["at_threshold"]["sensitivity"] == pytest.approx(sensitivity)
    assert paper["at_threshold"]["specificity"] == pytest.approx(specificity)
    point = paper["operating_point"]  # where a slope-1 line touches the ROC: the largest TPR - FPR
    fpr, tpr, _ = roc_curve(labels[in_paper], probability[in_paper])
    assert point["youden_j"] == pytest.approx(np.max(tpr - fpr)) == pytest.approx(point["tpr"] - point["fpr"])
    _, sensitivity, specificity = _rates(labels[in_paper], probability[in_paper], point["threshold"])
    assert (sensitivity, specificity) == pytest.approx((point["tpr"], 1 - point["fpr"]))

    # the age table (paper's Table 1) covers the whole balanced set
    ages = [float(r["age"]) if r["age"] else float("nan") for r in rows]
    assert sum(group["patches"] for group in paper["age_groups"]) == paper["patches"] == int(in_paper.sum())
    for group in paper["age_groups"]:
        if group["age_group"] == "other/unknown":
            continue
        low, high = (float(v) for v in group["age_group"].split("-"))
        member = in_paper & np.array([low <= age <= high for age in ages])
        assert group["patches"] == int(member.sum())
        if member.any():
            assert group["accuracy"] == pytest.approx(_rates_acc(labels[member], probability[member], threshold))

    # realistic protocol: every tissue patch as the app scores it (calcified non-tissue patches score 0)
    real = report["realistic_protocol"]
    app_score = np.where(tissue, probability, 0.0)
    assert real["patches"] == len(rows)
    assert real["auc"] == pytest.approx(roc_auc_score(labels, app_score))
    accuracy, sensitivity, specificity = _rates(labels, app_score, threshold)
    assert real["at_threshold"]["accuracy"] == pytest.approx(accuracy)
    assert real["at_threshold"]["sensitivity"] == pytest.approx(sensitivity)
    assert real["at_threshold"]["specificity"] == pytest.approx(specificity)
    images = sorted({r["image_id"] for r in rows})
    false_positives = int(((app_score >= threshold) & (labels == 0)).sum())
    assert real["false_positive_patches_per_image"] == pytest.approx(false_positives / len(images))
    image_ids = np.array([r["image_id"] for r in rows])
    image_labels = [int(labels[image_ids == i].any()) for i in images]
    image_scores = [float(probability[(image_ids == i) & tissue].max()) for i in images]
    assert 0 < sum(image_labels) < len(images)
    assert real["image_level"]["auc"] == pytest.approx(roc_auc_score(image_labels, image_scores))
    assert real["froc"]["regions"] > 0 and real["froc"]["curve"]

    for summary in (paper, real):
        for key in ("auc", "sensitivity", "specificity"):
            low, high = summary["bootstrap"][key]
            assert low is None or low <= high
        assert summary["bootstrap"]["iterations"] == 200

    # files, and the split: only held-out patients were tested
    for name in ("report.md", "roc_paper.png", "roc_realistic.png", "froc.png", "split.json"):
        assert (report_dir / name).is_file(), name
    assert report["files"]["overlays"] and all((report_dir / p).is_file() for p in report["files"]["overlays"])
    model_split = json.loads((model_dir / "split.json").read_text())
    assert {e["image_id"] for e in report["split"]["test"]} == {e["image_id"] for e in model_split["test"]}
    assert set(images) == {e["image_id"] for e in model_split["test"]}
    assert not _groups(report["split"]["test"]) & _groups(model_split["train"] + model_split["validation"])
    assert report["split"]["overlap_with_training"] == []
    markdown = (report_dir / "report.md").read_text()
    assert "Accuracy per age group" in markdown and "31-45" in markdown and "FROC" in markdown
    # the report leads with the FROC, the image AUC and the stored threshold's false marks per film
    headline = report["headline"]
    assert next(iter(report)) == "headline" and markdown.index("## FROC") < markdown.index("## Paper protocol")
    assert headline["image_auc"]["value"] == pytest.approx(roc_auc_score(image_labels, image_scores))
    assert headline["at_threshold"]["false_marks_per_film"]["value"] == pytest.approx(false_positives / len(images))
    assert headline["at_threshold"]["threshold"] == threshold and headline["bootstrap"]["iterations"] == 200


def _rates_acc(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == (labels == 1)))


def test_split_is_rederived_or_reused_and_the_run_repeats(data_dir: Path, model_dir: Path, report_dir: Path) -> None:
    records = load_records(data_dir)
    recorded = {e["image_id"] for e in json.loads((model_dir / "split.json").read_text())["test"]}
    again = select_test_records(records, test_fraction=0.5, seed=0)
    assert {r.image_id for r in again.records} == recorded
    reused = select_test_records(load_records(data_dir), split_file=report_dir / "split.json")
    assert {r.image_id for r in reused.records} == recorded

    out = report_dir.parent / "report-pairs"
    code = main(["evaluate", str(data_dir), "--model", str(model_dir / "best.pt"), "--out", str(out),
                 "--split", str(report_dir / "split.json"), "--paper-pairs", "2", "--bootstrap", "20",
                 "--overlays", "0", *FAST])
    assert code == 0
    first = {(r["image_id"], r["patch"]): float(r["probability"]) for r in _read_csv(report_dir / "predictions.csv")}
    second = {(r["image_id"], r["patch"]): float(r["probability"]) for r in _read_csv(out / "predictions.csv")}
    assert second.keys() == first.keys()
    np.testing.assert_allclose(list(second.values()), [first[key] for key in second], atol=1e-6)
    paper = json.loads((out / "report.json").read_text())["paper_protocol"]
    assert (paper["positives"], paper["negatives"]) == (2, 2)


def test_interrupted_training_resumes_from_last_checkpoint(data_dir: Path, tmp_path: Path,
                                                           tiny_train: list[str]) -> None:
    out = tmp_path / "resumable"
    command = [sys.executable, "-m", "plaid.cli", "train", str(data_dir), "--out", str(out), *tiny_train]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([*command, "--epochs", "50"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    try:
        deadline = time.monotonic() + 180
        while not (out / "last.pt").is_file():
            assert process.poll() is None, "training ended before writing last.pt"
            assert time.monotonic() < deadline, "no last.pt after 180 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    interrupted = read_checkpoint(out / "last.pt")
    done = int(interrupted["epoch"])
    assert 1 <= done < 50

    finished = subprocess.run([*command, "--epochs", str(done + 1), "--resume"], capture_output=True, text=True,
                              env=env, timeout=240)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from {out / 'last.pt'} after epoch {done}" in finished.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == done and summary["epochs_completed"] == done + 1
    history = json.loads((out / "history.json").read_text())
    assert [item["epoch"] for item in history] == list(range(1, done + 2))
    for before, after in zip(interrupted["history"], history, strict=False):
        assert after["train_loss"] == pytest.approx(before["train_loss"])


@pytest.fixture
def bad_data(data_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two good patients plus an image whose mask has the wrong shape and an unreadable .png.

    Returns the folder, the wrong-shaped mask and the unreadable image (the two files to be named).
    """
    folder = tmp_path / "bad"
    (folder / "labels" / "final").mkdir(parents=True)
    for image_id in ("SYN0001_R_CC", "SYN0001_R_MLO", "SYN0002_L_CC", "SYN0002_L_MLO"):
        source = next(data_dir.glob(f"{image_id}.*"))
        shutil.copy2(source, folder / source.name)
        shutil.copy2(data_dir / "labels" / "final" / f"{image_id}.png", folder / "labels" / "final")
    shutil.copy2(data_dir / "metadata.csv", folder / "metadata.csv")
    source = next(data_dir.glob("SYN0001_R_CC.*"))
    shutil.copy2(source, folder / f"SYN0009_R_CC{source.suffix}")
    wrong_shape = write_label_png(folder / "labels" / "final" / "SYN0009_R_CC.png", np.zeros((100, 80), np.uint8))
    unreadable = folder / "SYN0010_R_CC.png"
    unreadable.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG file")
    write_label_png(folder / "labels" / "final" / "SYN0010_R_CC.png", np.zeros((560, 448), dtype=np.uint8))
    return folder, wrong_shape, unreadable


def test_bad_files_are_skipped_and_named_or_stop_the_run(
    bad_data: tuple[Path, Path, Path], model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture, tiny_train: list[str],
) -> None:
    folder, wrong_shape, unreadable = bad_data
    out = tmp_path / "model"
    assert main(["train", str(folder), "--out", str(out), "--epochs", "1", *tiny_train]) == 0
    printed = capsys.readouterr().out
    assert str(wrong_shape) in printed and str(unreadable) in printed
    problems = json.loads((out / "split.json").read_text())["problems"]
    assert {p["path"] for p in problems} == {str(wrong_shape), str(unreadable)}
    assert any("does not match image" in p["message"] for p in problems)
    skipped = json.loads((out / "train_summary.json").read_text())["skipped"]
    assert {p["path"] for p in skipped} == {str(wrong_shape), str(unreadable)}

    caplog.clear()
    code = main(["train", str(folder), "--out", str(tmp_path / "stopped"), "--epochs", "1", "--on-error", "stop",
                 *tiny_train])
    assert code != 0
    assert str(wrong_shape) in caplog.text or str(unreadable) in caplog.text
    assert not (tmp_path / "stopped" / "last.pt").exists()

    report = tmp_path / "report"
    assert main(["evaluate", str(folder), "--model", str(model_dir / "best.pt"), "--out", str(report), "--all",
                 "--bootstrap", "10", "--overlays", "1", *FAST]) == 0
    skipped = json.loads((report / "report.json").read_text())["problems"]
    assert {p["path"] for p in skipped} == {str(wrong_shape), str(unreadable)}
    markdown = (report / "report.md").read_text()
    assert str(wrong_shape) in markdown and str(unreadable) in markdown

    caplog.clear()
    code = main(["evaluate", str(folder), "--model", str(model_dir / "best.pt"), "--out", str(tmp_path / "r2"),
                 "--all", "--on-error", "stop", *FAST])
    assert code != 0 and (str(wrong_shape) in caplog.text or str(unreadable) in caplog.text)


def test_infer_writes_mask_probability_map_and_overlay(data_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    import itk

    images = [next(data_dir.glob("SYN0001_R_CC.*")), next(data_dir.glob("SYN0002_L_CC.*"))]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "infer"
    code = main(["infer", *map(str, images), str(broken), "--model", str(model_dir / "best.pt"), "--out", str(out),
                 "--format", "nrrd", "--probability", *FAST])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [item["image_id"] for item in summary["images"]] == ["SYN0001_R_CC", "SYN0002_L_CC"]
    assert [Path(p["path"]).name for p in summary["problems"]] == ["broken.png"]
    for item in summary["images"]:
        shape = tuple(item["shape"])
        assert shape == (560, 448)
        mask = read_label_mask(item["files"]["mask"], shape)
        assert mask.shape == shape
        probability = np.squeeze(itk.array_from_image(itk.imread(item["files"]["probability"])))
        assert probability.shape == shape and 0.0 <= probability.min() and probability.max() <= 1.0
        np.testing.assert_array_equal(mask, (probability >= item["threshold"]) & (probability > 0))
        boxes = [entry["box"] for entry in item["positives"]]
        assert mask.sum() == sum((bottom - top) * (right - left) for top, left, bottom, right in boxes)
        with Image.open(item["files"]["overlay"]) as picture:
            assert picture.mode == "RGB" and picture.width >= 448 // 2


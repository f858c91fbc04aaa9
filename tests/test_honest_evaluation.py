"""Every reported figure is honest: a woman's films stay on one side of every split even when her id lives only
in the DICOM headers, `plaid evaluate` reports only films that neither trained the model nor chose its threshold
(unless told, and then says so), the threshold names the films it was chosen on and warns when they are too few,
and an INbreast cluster of many specks is one region."""

from __future__ import annotations

import json
import plistlib
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from plaid.cli import main
from plaid.evaluate.froc import region_scores
from plaid.io.datalist import load_records
from plaid.io.dicom import write_dicom_mammogram
from plaid.io.labels import read_label_mask
from plaid.model.checkpoint import read_checkpoint
from plaid.patches.grid import PatchGrid
from plaid.patches.labels import patch_labels_from_mask
from plaid.synth.datasets import generate_dataset

pytestmark = pytest.mark.slow

FAST = ["--batch-size", "16", "--no-progress", "--runtime", "torch-fp32"]
TRAIN = ["--epochs", "1", "--batch-size", "16", "--no-progress", "--architecture", "resnet18", "--frozen-layers", "0",
         "--patch-size", "64", "--val-fraction", "0.3", "--offline"]


@pytest.fixture(scope="module")
def pacs_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a PACS exports it: DICOM films under opaque names, two views per woman, the patient id only in
    each header, masks beside them under the same opaque names, no metadata.csv."""
    source = tmp_path_factory.mktemp("synth") / "films"
    generate_dataset(source, 16, seed=3, height=320, width=256, formats=("dcm",), calcified_fraction=0.6,
                     max_clusters=1)
    folder = tmp_path_factory.mktemp("export") / "films"
    (folder / "labels" / "final").mkdir(parents=True)
    for number, path in enumerate(sorted(source.glob("*.dcm"))):
        opaque = f"IMG{(number * 7919) % 1000:04d}"  # names that say nothing of the woman
        shutil.copyfile(path, folder / f"{opaque}.dcm")
        shutil.copyfile(source / "labels" / "final" / f"{path.stem}.png", folder / "labels" / "final" / f"{opaque}.png")
    return folder


def _woman(path: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).PatientID)


def test_header_patients_keep_each_woman_on_one_side_and_evaluate_scores_only_her_test_films(
    pacs_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = load_records(pacs_export)
    assert not (pacs_export / "metadata.csv").exists()
    assert all(record.patient_id == _woman(record.image) for record in records)  # read before any split
    women = {record.patient_id for record in records}
    assert len(women) == 8 and len(records) == 16

    run = tmp_path / "run"
    assert main(["train", str(pacs_export), "--out", str(run), "--test-fraction", "0.5", *TRAIN]) == 0
    split = json.loads((run / "split.json").read_text())
    sides = {part: {_woman(str(pacs_export / f"{entry['image_id']}.dcm")) for entry in split[part]}
             for part in ("train", "validation", "test")}
    assert sides["test"] and sides["train"]
    assert not sides["test"] & (sides["train"] | sides["validation"])  # no woman on both sides
    assert len(split["test"]) == 2 * len(sides["test"])  # both views of each test woman are tested

    report_dir = tmp_path / "report"
    assert main(["evaluate", str(pacs_export), "--model", str(run / "best.pt"), "--out", str(report_dir),
                 "--bootstrap", "20", "--overlays", "0", *FAST]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["split"]["scored_images"]) == {entry["image_id"] for entry in split["test"]}
    assert report["seen_films_included"] is False
    headline = report["headline"]
    assert headline["bootstrap"]["unit"] == "patient" and headline["patients"] == len(sides["test"])
    assert headline["films"] == 2 * headline["patients"]  # the bootstrap draws women, each with her two films

    # a film of a training woman is refused by name unless --all is given, and then the report says so first
    trained = split["train"][0]
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps({"test": [trained, *split["test"]]}))
    caplog.clear()
    assert main(["evaluate", str(pacs_export), "--model", str(run / "best.pt"), "--out", str(tmp_path / "r2"),
                 "--split", str(listed), "--bootstrap", "0", "--overlays", "0", *FAST]) == 2
    assert "trained or validated the model" in caplog.text and _woman(trained["image"]) in caplog.text
    assert not (tmp_path / "r2" / "report.json").exists()
    assert main(["evaluate", str(pacs_export), "--model", str(run / "best.pt"), "--out", str(tmp_path / "r3"),
                 "--all", "--bootstrap", "0", "--overlays", "0", *FAST]) == 0
    first_lines = (tmp_path / "r3" / "report.md").read_text().splitlines()[:3]
    assert "include films the model has seen (--all)" in "\n".join(first_lines)

    # the stored threshold names its films and warns: they are far fewer than 10 normal films
    stored = read_checkpoint(run / "best.pt")
    assert {entry["image_id"] for entry in stored["threshold_films"]} <= {e["image_id"] for e in split["validation"]}
    assert stored["operating_point_normal_films"] < 10
    assert "fewer than 10" in stored["operating_point_warning"]
    assert "fewer than 10" in (report_dir / "report.md").read_text()


def test_an_ensemble_leaves_the_members_test_films_out_of_its_threshold(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from plaid.model.checkpoint import save_checkpoint
    from plaid.model.network import PatchClassifier

    films = tmp_path / "films"
    generate_dataset(films, 8, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    records = load_records(films)
    tested = [{"image_id": r.image_id, "patient_id": r.patient_id} for r in records if r.patient_id == "SYN0001"]
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(save_checkpoint(tmp_path / f"m{seed}.pt", PatchClassifier(frozen_layers=0,
                                                                                  architecture="resnet18"),
                                       threshold=0.5, patch_settings={"patch_size": 64, "stride": None},
                                       config={"seed": seed, "patch_size": 64},
                                       split={"train": [], "validation": [], "test": tested}))
    out = tmp_path / "ensemble.pt"
    caplog.clear()
    assert main(["ensemble", *map(str, members), "--out", str(out), "--data", str(films), *FAST]) == 0
    assert "leaving out 2 films of --data whose patients a member held out as its test films" in caplog.text
    stored = read_checkpoint(out)
    chose = {entry["image_id"] for entry in stored["threshold_films"]}
    assert chose == {r.image_id for r in records} - {entry["image_id"] for entry in tested}
    assert stored["split"]["test"] == tested  # the members' test films stay the ensemble's test films
    assert main(["evaluate", str(films), "--model", str(out), "--out", str(tmp_path / "report"), "--bootstrap", "0",
                 "--overlays", "0", *FAST]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["split"]["scored_images"]) == {entry["image_id"] for entry in tested}
    # listing a film that chose the threshold is refused, naming its woman
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps({"test": stored["threshold_films"][:1]}))
    caplog.clear()
    assert main(["evaluate", str(films), "--model", str(out), "--out", str(tmp_path / "r2"), "--split", str(listed),
                 "--bootstrap", "0", "--overlays", "0", *FAST]) == 2
    assert "chose the model's stored threshold" in caplog.text
    assert stored["threshold_films"][0]["patient_id"] in caplog.text


def _inbreast_xml(path: Path, rois: list[tuple[str, list[tuple[float, float]]]]) -> None:
    content = {"Images": [{"ROIs": [{"Name": name, "Point_px": [f"({x}, {y})" for x, y in points]}
                                    for name, points in rois]}]}
    with path.open("wb") as handle:
        plistlib.dump(content, handle)


def test_an_inbreast_cluster_of_many_specks_is_one_region(tmp_path: Path) -> None:
    dicoms, xml, out = tmp_path / "AllDICOMs", tmp_path / "AllXML", tmp_path / "imported"
    dicoms.mkdir()
    xml.mkdir()
    rng = np.random.default_rng(0)
    write_dicom_mammogram(dicoms / "50990001_abc123_MG_R_CC_ANON.dcm", rng.integers(0, 4000, (1024, 896)),
                          pixel_spacing_mm=0.07, patient_id="abc123")
    # 20 specks within a 6 mm square (neighbours under 2 mm apart), and one speck 30 mm away
    specks = [(300 + 20 * (i % 5) + rng.uniform(-3, 3), 300 + 20 * (i // 5) + rng.uniform(-3, 3)) for i in range(20)]
    _inbreast_xml(xml / "50990001.xml", [("Calcification", [point]) for point in specks]
                  + [("Calcification", [(750.0, 800.0)])])
    assert main(["import", "inbreast", str(dicoms), str(xml), str(out)]) == 0
    row = (out / "metadata.csv").read_text().splitlines()
    header, values = row[0].split(","), row[1].split(",")
    assert dict(zip(header, values, strict=True))["regions"] == "2"
    assert json.loads((out / "import_report.json").read_text())["regions"] == 2
    mask = read_label_mask(out / "masks" / "50990001.png")
    grid = PatchGrid(*mask.shape, patch_size=224)
    scores = np.linspace(0.1, 0.9, len(grid))
    regions = region_scores(mask, grid, scores, patch_labels_from_mask(mask, grid), spacing_mm=0.07)
    assert len(regions) == 2  # the FROC counts what the importer counted: one cluster, one lone speck
    assert len(region_scores(mask, grid, scores, patch_labels_from_mask(mask, grid), spacing_mm=0.07,
                             cluster_gap_mm=0)) == 21  # single-speck counting, by name


def test_a_film_calcified_only_at_image_level_counts_in_the_image_auc(tmp_path: Path) -> None:
    import csv

    import torch

    from plaid.model.checkpoint import save_checkpoint
    from plaid.model.network import PatchClassifier

    films = tmp_path / "films"
    generate_dataset(films, 6, seed=2, height=256, width=192, formats=("png",), calcified_fraction=0.7,
                     max_clusters=1)
    masks = films / "labels" / "final"
    spread = next(path.stem for path in sorted(masks.glob("*.png")) if read_label_mask(path).any())
    (masks / f"{spread}.png").unlink()  # calcifications spread over the film: known, not located (MIAS NOTE 3)
    with (films / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["calcified"] = "1" if row["image_id"] == spread else ""
    with (films / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "model.pt", PatchClassifier(frozen_layers=0, architecture="resnet18"),
                            threshold=0.5, patch_settings={"patch_size": 64, "stride": None}, config={"seed": 0})
    assert main(["evaluate", str(films), "--model", str(model), "--out", str(tmp_path / "report"),
                 "--bootstrap", "0", "--overlays", "0", *FAST]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["image_level_only_films"] == [spread]
    headline = report["headline"]
    assert headline["films"] == 6 and headline["located_films"] == 5  # in the image AUC, not in the FROC
    line = next(item for item in report["per_image"] if item["image_id"] == spread)
    assert line["calcified"] is True and line["located"] is False and line["regions"] is None
    assert spread not in {row["image_id"] for row in csv.DictReader((tmp_path / "report" / "predictions.csv").open())}

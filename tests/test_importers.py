"""Dataset adapters on small files written in each dataset's documented format."""

from __future__ import annotations

import csv
import json
import plistlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plaid.cli import main
from plaid.io.datalist import load_records
from plaid.io.dicom import write_dicom_mammogram
from plaid.io.labels import read_label_mask

MIAS_HEADER = """MIAS readme text
1st column: MIAS database reference number.
Coordinate system origin is the bottom-left corner.
=================================================================

"""


def _film(height: int = 256, width: int = 200) -> np.ndarray:
    """An 8-bit film: a bright half-disc breast on the left, dark background on the right."""
    rows, cols = np.mgrid[:height, :width]
    breast = (rows - height / 2) ** 2 + cols**2 < (0.55 * width) ** 2
    return np.where(breast, 170, 12).astype(np.uint8)


def _write_mias(folder: Path) -> tuple[Path, Path]:
    images = folder / "films"
    images.mkdir(parents=True)
    for number in (1, 2, 3, 4, 5, 6):
        suffix = ".png" if number == 2 else ".pgm"
        Image.fromarray(_film()).save(images / f"mdb{number:03d}{suffix}")
    info = folder / "Info.txt"
    info.write_text(MIAS_HEADER + "\n".join([
        "mdb001 G CALC B 50 200 10",     # row 255 - 200 = 55
        "mdb001 G CALC M 60 100 8",      # a second cluster on the same film: row 155
        "mdb002 G NORM ",
        "mdb003 D CALC M *NOTE 3* ",     # distributed: image-level positive
        "mdb004 F CALC B 190 20 3",      # centre on the background: left out
        "mdb005 F CIRC B 40 128 20",     # a mass: a finding, not a calcification
        "mdb006 F NORM",
        "mdb007 F NORM",                 # listed but no file
    ]) + "\n\n=====\n")
    return info, images


def test_mias_import_bottom_left_origin_pairs_and_left_out_rows(tmp_path: Path) -> None:
    info, images = _write_mias(tmp_path)
    out = tmp_path / "out"
    assert main(["import", "mias", str(info), str(images), str(out)]) == 0

    mask = read_label_mask(out / "masks" / "mdb001.png", (256, 200))
    assert mask[55, 50] == 1 and mask[155, 60] == 1          # both rows of one image, origin bottom-left
    assert mask[200, 50] == 0 and mask[100, 60] == 0         # not where a top-left origin would put them
    assert mask[55, 61] == 0 and mask[55, 59] == 1           # radius 10 around column 50
    assert not read_label_mask(out / "masks" / "mdb002.png").any()   # normal film: empty mask
    assert not (out / "masks" / "mdb003.png").exists()       # distributed: no location to mark
    assert not (out / "masks" / "mdb004.png").exists()       # its only circle is outside the breast
    findings = read_label_mask(out / "findings" / "mdb005.png")
    assert findings[255 - 128, 40] == 1
    assert not read_label_mask(out / "masks" / "mdb005.png").any()   # a mass is no calcification

    with (out / "metadata.csv").open() as handle:
        rows = {row["image_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {f"mdb00{n}" for n in range(1, 7)}
    assert rows["mdb001"]["patient_id"] == rows["mdb002"]["patient_id"] == "mdb001+mdb002"
    assert rows["mdb003"]["patient_id"] == rows["mdb004"]["patient_id"] == "mdb003+mdb004"
    assert rows["mdb001"]["pixel_spacing_mm"] == "0.2" and rows["mdb001"]["calcification_clusters"] == "2"
    assert rows["mdb003"]["calcified"] == "1" and rows["mdb003"]["has_mask"] == "0"
    assert rows["mdb004"]["calcified"] == "1" and rows["mdb004"]["has_mask"] == "0"
    assert rows["mdb005"]["abnormalities"] == "CIRC" and rows["mdb005"]["calcified"] == "0"
    assert rows["mdb001"]["tissue"] == "G" and rows["mdb001"]["severity"] == "B;M"
    report = json.loads((out / "import_report.json").read_text())
    reasons = {item["image_id"]: item["reason"] for item in report["left_out"]}
    assert "outside the breast" in reasons["mdb004"] and "not found" in reasons["mdb007"]
    assert sorted(report["image_level_only"]) == ["mdb003", "mdb004"]
    assert (out / "mdb002.png").is_file() and (out / "mdb001.pgm").is_file()

    records = {record.image_id: record for record in load_records(out)}
    assert records["mdb001"].label and records["mdb002"].label and records["mdb003"].label is None
    assert records["mdb001"].patient_id == "mdb001+mdb002"


def _cbis_dicom(path: Path, pixels: np.ndarray, bits: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom_mammogram(path, pixels, bits_stored=bits, pixel_spacing_mm=0.05)


def test_cbis_ddsm_import_unites_rows_and_finds_renamed_roi_folders(tmp_path: Path) -> None:
    root = tmp_path / "CBIS-DDSM"
    shape = (240, 180)
    image = np.full(shape, 1500.0)
    full = "Calc-Training_P_00001_LEFT_CC/1.3.6.1.1/1.3.6.1.2/000000.dcm"
    _cbis_dicom(root / full, image)
    roi_one = np.zeros(shape)
    roi_one[20:30, 40:50] = 255
    _cbis_dicom(root / "Calc-Training_P_00001_LEFT_CC_1/1.3.6.1.3/1.3.6.1.4/000000.dcm", roi_one, bits=8)
    roi_two = np.zeros(shape)
    roi_two[200:210, 100:120] = 255
    # TCIA download with renamed series folders: the CSV path does not exist; the cropped image sits beside
    renamed = root / "Calc-Training_P_00001_LEFT_CC_2" / "07-20-2016-DDSM-1" / "1-ROI"
    _cbis_dicom(renamed / "1-1.dcm", np.full((12, 22), 900.0))
    _cbis_dicom(renamed / "1-2.dcm", roi_two, bits=8)
    mass_full = "Mass-Training_P_00002_RIGHT_MLO/1.3.6.2.1/1.3.6.2.2/000000.dcm"
    _cbis_dicom(root / mass_full, image)
    mass_roi = np.zeros(shape)
    mass_roi[100:150, 50:90] = 255
    _cbis_dicom(root / "Mass-Training_P_00002_RIGHT_MLO_1/1.3.6.2.3/1.3.6.2.4/000000.dcm", mass_roi, bits=8)

    columns = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]
    calc_csv = tmp_path / "calc_case_description_train_set.csv"
    with calc_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(["P_00001", "2", "LEFT", "CC", "1", "calcification", "PLEOMORPHIC", "CLUSTERED", "4",
                         "MALIGNANT", "3", full, "x/y/z/000000.dcm",
                         "Calc-Training_P_00001_LEFT_CC_1/1.3.6.1.3/1.3.6.1.4/000000.dcm"])
        writer.writerow(["P_00001", "2", "LEFT", "CC", "2", "calcification", "AMORPHOUS", "CLUSTERED", "3",
                         "BENIGN", "2", full, "x/y/z/000001.dcm",
                         "Calc-Training_P_00001_LEFT_CC_2/1.3.6.1.5/1.3.6.1.6/000001.dcm\n"])
    mass_csv = tmp_path / "mass_case_description_train_set.csv"
    with mass_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                         "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                         "image file path", "cropped image file path", "ROI mask file path"])
        writer.writerow(["P_00002", "3", "RIGHT", "MLO", "1", "mass", "OVAL", "CIRCUMSCRIBED", "3", "BENIGN", "4",
                         mass_full, "a/b/c.dcm", "Mass-Training_P_00002_RIGHT_MLO_1/1.3.6.2.3/1.3.6.2.4/000000.dcm"])

    out = tmp_path / "out"
    assert main(["import", "cbis-ddsm", str(root), str(out), "--csv", str(calc_csv), "--csv", str(mass_csv)]) == 0
    mask = read_label_mask(out / "masks" / "Calc-Training_P_00001_LEFT_CC.png", shape)
    assert mask[25, 45] and mask[205, 110] and mask.sum() == 100 + 200
    assert not read_label_mask(out / "masks" / "Mass-Training_P_00002_RIGHT_MLO.png").any()
    assert read_label_mask(out / "findings" / "Mass-Training_P_00002_RIGHT_MLO.png")[120, 60]
    with (out / "metadata.csv").open() as handle:
        rows = {row["image_id"]: row for row in csv.DictReader(handle)}
    calc = rows["Calc-Training_P_00001_LEFT_CC"]
    assert calc["patient_id"] == "P_00001" and calc["calcified"] == "1" and calc["pathology"] == "BENIGN;MALIGNANT"
    assert calc["pixel_spacing_mm"] == "0.05" and calc["density"] == "2"
    assert rows["Mass-Training_P_00002_RIGHT_MLO"]["density"] == "3"
    records = load_records(out)
    assert {r.image_id for r in records if r.label} == set(rows)


def _inbreast_xml(path: Path, rois: list[tuple[str, list[tuple[float, float]]]]) -> None:
    content = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": [
        {"Name": name, "NumberOfPoints": len(points), "Point_px": [f"({x}, {y})" for x, y in points],
         "Point_mm": [f"({x * 0.07}, {y * 0.07}, 0)" for x, y in points]}
        for name, points in rois]}]}
    with path.open("wb") as handle:
        plistlib.dump(content, handle, fmt=plistlib.FMT_XML)


def test_inbreast_import_points_contours_clusters_and_patients(tmp_path: Path) -> None:
    dicoms, xml = tmp_path / "AllDICOMs", tmp_path / "AllXML"
    dicoms.mkdir()
    xml.mkdir()
    shape = (200, 160)
    for name in ("20586908_6c613a14b80a8591_MG_R_CC_ANON", "20586934_6c613a14b80a8591_MG_L_CC_ANON",
                 "22614097_8d0b9620c53c0268_MG_L_MLO_ANON"):
        write_dicom_mammogram(dicoms / f"{name}.dcm", np.full(shape, 2000.0), pixel_spacing_mm=0.07)
    _inbreast_xml(xml / "20586908.xml", [
        ("Calcification", [(30.0, 40.0)]),                                             # a point
        ("Calcification", [(100, 100), (110, 100), (110, 112), (100, 112)]),           # a contour
        ("Cluster", [(20, 20), (60, 20), (60, 60), (20, 60)]),
        ("Mass", [(10, 150), (60, 150), (60, 190), (10, 190)]),
    ])
    _inbreast_xml(xml / "22614097.xml", [("Cluster", [(20, 20), (60, 20), (60, 60)])])

    out = tmp_path / "out"
    assert main(["import", "inbreast", str(dicoms), str(xml), str(out)]) == 0
    mask = read_label_mask(out / "masks" / "20586908.png", shape)
    assert mask[40, 30] and mask[42, 30] and not mask[40, 34]          # point (x 30, y 40) -> row 40, col 30
    assert mask[106, 105] and not mask[106, 95]                        # filled contour
    assert not mask[25, 55]                                            # cluster outline not marked by default
    assert read_label_mask(out / "findings" / "20586908.png")[170, 30]
    assert not read_label_mask(out / "masks" / "20586934.png").any()   # no XML: nothing annotated
    assert not (out / "masks" / "22614097.png").exists()               # only a cluster outline: image level
    with (out / "metadata.csv").open() as handle:
        rows = {row["image_id"]: row for row in csv.DictReader(handle)}
    assert rows["20586908"]["patient_id"] == rows["20586934"]["patient_id"] == "6c613a14b80a8591"
    assert rows["20586908"]["pixel_spacing_mm"] == "0.07" and rows["20586908"]["laterality"] == "R"
    assert rows["22614097"]["calcified"] == "1" and rows["22614097"]["has_mask"] == "0"

    with_clusters = tmp_path / "clusters"
    assert main(["import", "inbreast", str(dicoms), str(xml), str(with_clusters), "--clusters"]) == 0
    assert read_label_mask(with_clusters / "masks" / "20586908.png")[25, 55]
    assert read_label_mask(with_clusters / "masks" / "22614097.png")[30, 40]


def test_mias_import_names_a_missing_folder(tmp_path: Path) -> None:
    info, _ = _write_mias(tmp_path)
    from plaid.errors import PlaidInputError
    from plaid.importers.mias import import_mias

    with pytest.raises(PlaidInputError, match="images folder does not exist"):
        import_mias(info, tmp_path / "nowhere", tmp_path / "out")

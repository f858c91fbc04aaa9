"""The synthetic mammogram generator: seeded, anatomically laid out, masks that match the specks."""

from __future__ import annotations

import csv
from pathlib import Path

import itk
import numpy as np
import pytest
from scipy import ndimage

from plaid.cli import main as plaid_main
from plaid.image_io import read_mammogram
from plaid.label_io import read_label_mask
from plaid.synth import generate_dataset, synthesize_case
from plaid.tissue import tissue_mask


def test_seeded_and_twelve_bit() -> None:
    a = synthesize_case(448, 384, seed=5, n_clusters=2)
    b = synthesize_case(448, 384, seed=5, n_clusters=2)
    c = synthesize_case(448, 384, seed=6, n_clusters=2)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.calcification_mask, b.calcification_mask)
    assert not np.array_equal(a.pixels, c.pixels)
    assert a.pixels.dtype == np.uint16 and a.pixels.max() <= 4095


@pytest.mark.parametrize(("view", "laterality"), [("CC", "R"), ("MLO", "L")])
def test_calcifications_inside_tissue_and_clusters_of_three_or_more(view: str, laterality: str) -> None:
    case = synthesize_case(896, 720, seed=3, view=view, laterality=laterality, n_clusters=2)
    mask = case.calcification_mask.astype(bool)
    assert mask.any()
    assert np.all(case.breast_mask[mask])
    assert np.all(tissue_mask(case.pixels.astype(np.float32))[mask])
    components, count = ndimage.label(mask)
    assert count >= 6  # two clusters of at least three specks (specks may touch; 3 per cluster minimum)
    for cluster in case.clusters:
        assert cluster["n_specks"] >= 3
        window = components[max(0, cluster["row"] - 120): cluster["row"] + 120,
                            max(0, cluster["col"] - 120): cluster["col"] + 120]
        assert len(np.unique(window[window > 0])) >= 2


def test_specks_are_small_and_brighter_than_surrounding_tissue() -> None:
    case = synthesize_case(896, 720, seed=11, n_clusters=3, pixel_spacing_mm=0.085)
    components, count = ndimage.label(case.calcification_mask)
    areas = ndimage.sum_labels(case.calcification_mask, components, np.arange(1, count + 1))
    diameters = 2 * np.sqrt(areas / np.pi)
    assert diameters.min() >= 1.0 and diameters.max() <= 14.0 * 2  # touching specks may merge into one component
    pixels = case.pixels.astype(np.float32)
    for number in range(1, count + 1):
        rows, cols = np.nonzero(components == number)
        row, col = int(rows.mean()), int(cols.mean())
        ring = pixels[max(0, row - 25): row + 25, max(0, col - 25): col + 25]
        assert pixels[rows, cols].max() > np.median(ring) + 200


def test_normal_case_has_empty_mask_and_mlo_has_pectoral_muscle() -> None:
    normal = synthesize_case(672, 560, seed=1, n_clusters=0, view="CC", laterality="R")
    assert normal.calcification_mask.sum() == 0 and normal.clusters == []
    mlo = synthesize_case(672, 560, seed=1, n_clusters=0, view="MLO", laterality="R")
    corner = (slice(0, 60), slice(0, 60))  # top of the chest wall (left edge for a right breast)
    assert mlo.pixels[corner].mean() > normal.pixels[corner].mean() + 500
    mlo_left = synthesize_case(672, 560, seed=1, n_clusters=0, view="MLO", laterality="L")
    assert mlo_left.pixels[:60, -60:].mean() > mlo_left.pixels[:60, :60].mean()


def test_files_round_trip_and_dataset_is_consistent(tmp_path: Path) -> None:
    rows = generate_dataset(tmp_path, count=6, seed=2, height=448, width=392, monochrome1_every=2)
    assert len(rows) == 6 and len({r["image_id"] for r in rows}) == 6
    with (tmp_path / "metadata.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["image_id"] for r in table] == [r["image_id"] for r in rows]
    patients = {}
    for row in table:
        patients.setdefault(row["patient_id"], set()).add(row["view"])
        image = read_mammogram(tmp_path / row["file"])
        mask = read_label_mask(tmp_path / row["label"], image.shape)
        assert int(row["n_specks"]) == 0 or mask.any()
        if row["file"].endswith(".dcm"):
            assert image.meta.patient_id == row["patient_id"] and image.meta.view == row["view"]
            assert image.meta.laterality == row["laterality"]
            assert image.meta.age_years == pytest.approx(float(row["age"]))
            assert image.meta.pixel_spacing_mm[0] == pytest.approx(float(row["pixel_spacing_mm"]), abs=1e-3)
            assert tuple(itk.size(itk.imread(str(tmp_path / row["file"]))))[:2] == (392, 448)
    assert all(views == {"CC", "MLO"} for views in patients.values())
    photometrics = {read_mammogram(p).meta.photometric for p in tmp_path.glob("*.dcm")}
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_dicom_values_survive_monochrome1(tmp_path: Path) -> None:
    from plaid.synth import write_case

    case = synthesize_case(448, 392, seed=9, n_clusters=1)
    write_case(case, tmp_path, "m1", fmt="dcm", monochrome1=True)
    write_case(case, tmp_path, "png", fmt="png")
    np.testing.assert_array_equal(read_mammogram(tmp_path / "m1.dcm").pixels, case.pixels.astype(np.float32))
    np.testing.assert_array_equal(read_mammogram(tmp_path / "png.png").pixels, case.pixels.astype(np.float32))


def test_cli_writes_dataset(tmp_path: Path) -> None:
    assert plaid_main(["synth", str(tmp_path / "out"), "--count", "2", "--height", "448", "--width", "448"]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) + len(list((tmp_path / "out").glob("*.dcm"))) == 2
    assert len(list((tmp_path / "out" / "labels" / "final").glob("*.png"))) == 2

"""The synthetic mammogram generator: seeded, anatomically laid out, masks that match the specks, files
that read back exactly, and the `plaid synth` command."""

from __future__ import annotations

import csv
from pathlib import Path

import itk
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from plaid.cli import main as plaid_main
from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask
from plaid.patches.tissue import tissue_mask
from plaid.synth.datasets import METADATA_COLUMNS, generate_dataset, write_case
from plaid.synth.generator import SyntheticCase, synthesize_case

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _specks(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (8-connectivity) of a calcification mask."""
    return ndimage.label(mask.astype(bool), structure=EIGHT_CONNECTED)


@pytest.fixture(scope="module")
def cases() -> dict[tuple[str, str], SyntheticCase]:
    """One calcified case per view and side, at the finest spacing (the largest specks in pixels)."""
    return {
        (view, side): synthesize_case(
            672, 560, seed=index + 3, view=view, laterality=side, n_clusters=2, pixel_spacing_mm=0.07
        )
        for index, (view, side) in enumerate([("CC", "R"), ("MLO", "L"), ("MLO", "R"), ("CC", "L")])
    }


def test_same_seed_same_case_and_different_seed_differs() -> None:
    a = synthesize_case(448, 384, seed=5, view="MLO", n_clusters=2)
    b = synthesize_case(448, 384, seed=5, view="MLO", n_clusters=2)
    c = synthesize_case(448, 384, seed=6, view="MLO", n_clusters=2)
    from_rng = synthesize_case(448, 384, rng=np.random.default_rng(5), view="MLO", n_clusters=2)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.calcification_mask, b.calcification_mask)
    np.testing.assert_array_equal(a.pixels, from_rng.pixels)
    assert a.clusters == b.clusters
    assert not np.array_equal(a.pixels, c.pixels)
    assert not np.array_equal(a.calcification_mask, c.calcification_mask)


def test_twelve_bit_values_dark_background_and_tissue_range() -> None:
    case = synthesize_case(672, 560, seed=8, view="CC", laterality="R", n_clusters=1)
    assert case.pixels.dtype == np.uint16 and case.pixels.shape == (672, 560)
    assert case.calcification_mask.dtype == np.uint8 and set(np.unique(case.calcification_mask)) == {0, 1}
    assert case.breast_mask.dtype == bool and case.breast_mask.shape == case.pixels.shape
    assert int(case.pixels.max()) <= 4095
    background = case.pixels[~case.breast_mask].astype(np.float32)
    assert background.mean() < 100 and 0 < background.std() < 30  # near black, a little noise
    inner = ndimage.binary_erosion(case.breast_mask, iterations=60)  # away from the thinning edge
    low, median, high = np.percentile(case.pixels[inner], [5, 50, 95])
    assert 1000 < low < median < high < 3600 and high - low > 500  # textured, a realistic chunk of 12 bits
    edge = case.breast_mask & ~ndimage.binary_erosion(case.breast_mask, iterations=8)
    assert np.median(case.pixels[edge]) < median - 300  # tissue thins toward the skin line


@pytest.mark.parametrize(("view", "side"), [("CC", "R"), ("MLO", "L"), ("MLO", "R"), ("CC", "L")])
def test_calcifications_sit_inside_the_breast_in_clusters_of_three_or_more(
    cases: dict[tuple[str, str], SyntheticCase], view: str, side: str
) -> None:
    case = cases[(view, side)]
    mask = case.calcification_mask.astype(bool)
    assert len(case.clusters) == 2 and mask.any()
    assert np.all(case.breast_mask[mask])
    assert np.all(tissue_mask(case.pixels.astype(np.float32))[mask])
    assert not np.any(mask & case.pectoral_mask)
    components, count = _specks(mask)
    assert count == case.n_specks  # every speck is its own component
    rows, cols = np.nonzero(mask)
    owner = np.full(rows.shape, -1)
    for number, cluster in enumerate(case.clusters):
        assert 3 <= cluster["n_specks"] <= 12 and len(cluster["specks"]) == cluster["n_specks"]
        near = np.hypot(rows - cluster["row"], cols - cluster["col"]) <= cluster["radius_px"]
        assert np.all(owner[near] == -1)  # clusters do not overlap
        owner[near] = number
        assert len(np.unique(components[rows[near], cols[near]])) == cluster["n_specks"] >= 3
        assert cluster["radius_px"] * case.pixel_spacing_mm < 8.0  # a spread of a few mm
    assert np.all(owner >= 0)  # every speck pixel belongs to a cluster


@pytest.mark.parametrize(("view", "side"), [("CC", "R"), ("MLO", "L")])
def test_specks_are_small_and_brighter_than_surrounding_tissue(
    cases: dict[tuple[str, str], SyntheticCase], view: str, side: str
) -> None:
    case = cases[(view, side)]
    mask = case.calcification_mask.astype(bool)
    components, count = _specks(mask)
    areas = ndimage.sum_labels(mask, components, np.arange(1, count + 1))
    diameters = 2.0 * np.sqrt(areas / np.pi)
    assert diameters.min() >= 1.0 and diameters.max() <= 14.0
    assert diameters.max() > 3.0  # not all specks are single pixels
    pixels = case.pixels.astype(np.float32)
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        window = tuple(slice(max(0, part.start - 20), part.stop + 20) for part in box)
        around = pixels[window][~ndimage.binary_dilation(mask[window], iterations=3)]
        speck = pixels[components == number]
        assert speck.min() > np.median(around), number
        assert speck.max() > np.median(around) + 400, number


def test_speck_count_and_contrast_can_be_set() -> None:
    case = synthesize_case(672, 560, seed=12, n_clusters=1, specks_per_cluster=(8, 9), speck_amplitude=(1000.0, 1100.0))
    _, count = _specks(case.calcification_mask)
    assert 8 <= case.clusters[0]["n_specks"] == count <= 9
    pixels, mask = case.pixels.astype(np.float32), case.calcification_mask.astype(bool)
    components, _ = _specks(mask)
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        window = tuple(slice(max(0, part.start - 20), part.stop + 20) for part in box)
        around = np.median(pixels[window][~ndimage.binary_dilation(mask[window], iterations=3)])
        assert pixels[components == number].max() > around + 550
    with pytest.raises(ValueError):
        synthesize_case(448, 384, seed=1, specks_per_cluster=(5, 2))
    with pytest.raises(ValueError):
        synthesize_case(448, 384, seed=1, view="ML")


def test_normal_case_has_an_empty_mask() -> None:
    normal = synthesize_case(448, 384, seed=1, n_clusters=0, view="MLO", laterality="L")
    assert normal.clusters == [] and normal.n_specks == 0
    assert normal.calcification_mask.sum() == 0


@pytest.mark.parametrize("side", ["R", "L"])
def test_chest_wall_side_follows_laterality_and_mlo_has_a_pectoral_muscle(side: str) -> None:
    cc = synthesize_case(672, 560, seed=4, n_clusters=0, view="CC", laterality=side)
    mlo = synthesize_case(672, 560, seed=4, n_clusters=0, view="MLO", laterality=side)
    wall, far = (-1, 0) if side == "R" else (0, -1)  # the breasts face each other as films are hung
    for case in (cc, mlo):
        assert case.breast_mask[:, wall].mean() > 0.6 and not case.breast_mask[:, far].any()
        half = case.pixels.shape[1] // 2
        brighter_right = case.pixels[:, half:].mean() > case.pixels[:, :half].mean()
        assert brighter_right == (side == "R")
    corner = (slice(0, 50), slice(-50, None) if side == "R" else slice(0, 50))  # top of the chest wall
    tissue = mlo.pixels[mlo.breast_mask & ~mlo.pectoral_mask]
    assert mlo.pectoral_mask[corner].all()
    assert mlo.pixels[corner].mean() > np.percentile(tissue, 75)
    assert 0.03 < mlo.pectoral_mask.mean() < 0.35
    assert not cc.pectoral_mask.any()
    assert cc.pixels[corner].mean() < np.median(cc.pixels[cc.breast_mask])


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    case = synthesize_case(448, 392, seed=9, n_clusters=1)
    row = write_case(case, tmp_path, "case_png", fmt="png")
    assert row["file"] == "case_png.png" and row["label"] == "labels/final/case_png.png"
    image = read_mammogram(tmp_path / "case_png.png")
    np.testing.assert_array_equal(image.pixels, case.pixels.astype(np.float32))
    mask = read_label_mask(tmp_path / row["label"], image.shape)
    np.testing.assert_array_equal(mask, case.calcification_mask)
    with Image.open(tmp_path / row["label"]) as handle:
        raw = np.asarray(handle)
    assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 1}


@pytest.mark.parametrize("monochrome1", [False, True])
def test_dicom_round_trip_gives_display_values_and_metadata(tmp_path: Path, monochrome1: bool) -> None:
    case = synthesize_case(448, 392, seed=10, view="MLO", laterality="L", n_clusters=1, pixel_spacing_mm=0.0725,
                           patient_id="SYN0042", age=61)
    row = write_case(case, tmp_path, "case_dcm", fmt="dcm", monochrome1=monochrome1)
    assert row["file"] == "case_dcm.dcm" and row["n_specks"] == case.n_specks > 0
    image = read_mammogram(tmp_path / "case_dcm.dcm")
    np.testing.assert_array_equal(image.pixels, case.pixels.astype(np.float32))  # bright = dense either way
    meta = image.meta
    assert meta.photometric == ("MONOCHROME1" if monochrome1 else "MONOCHROME2") and meta.bits_stored == 12
    assert (meta.patient_id, meta.laterality, meta.view) == ("SYN0042", "L", "MLO")
    assert meta.age_years == pytest.approx(61.0)
    assert meta.pixel_spacing_mm == pytest.approx((0.0725, 0.0725))
    itk_image = itk.imread(str(tmp_path / "case_dcm.dcm"))
    assert tuple(itk.size(itk_image))[:2] == (392, 448)
    values = itk.array_from_image(itk_image).reshape(448, 392)
    assert values.max() <= 4095
    if not monochrome1:
        np.testing.assert_array_equal(values, case.pixels)


def test_generate_dataset_writes_consistent_files_and_metadata(tmp_path: Path) -> None:
    rows = generate_dataset(tmp_path, count=6, seed=2, height=448, width=384, calcified_fraction=0.5,
                            monochrome1_every=2)
    assert len(rows) == 6
    with (tmp_path / "metadata.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == METADATA_COLUMNS
        table = list(reader)
    assert [r["image_id"] for r in table] == [r["image_id"] for r in rows]
    images = sorted(p for p in tmp_path.iterdir() if p.suffix in (".png", ".dcm"))
    assert len(images) == 6 and len({p.stem for p in images}) == 6
    assert sorted(p.name for p in images) == sorted(r["file"] for r in table)
    assert len(list((tmp_path / "labels" / "final").glob("*.png"))) == 6
    patients: dict[str, list[dict[str, str]]] = {}
    photometrics = set()
    for row in table:
        patients.setdefault(row["patient_id"], []).append(row)
        assert Path(row["file"]).stem == row["image_id"]
        image = read_mammogram(tmp_path / row["file"])
        assert image.shape == (448, 384)
        mask = read_label_mask(tmp_path / row["label"], image.shape)
        _, count = _specks(mask)
        assert count == int(row["n_specks"])
        assert (int(row["n_clusters"]) == 0) == (count == 0)
        assert 0.07 <= float(row["pixel_spacing_mm"]) <= 0.1
        if row["file"].endswith(".dcm"):
            photometrics.add(image.meta.photometric)
            assert image.meta.patient_id == row["patient_id"] and image.meta.view == row["view"]
            assert image.meta.laterality == row["laterality"]
            assert image.meta.age_years == pytest.approx(float(row["age"]))
            assert image.meta.pixel_spacing_mm[0] == pytest.approx(float(row["pixel_spacing_mm"]))
    assert sorted(patients) == ["SYN0001", "SYN0002", "SYN0003"]
    for pair in patients.values():
        assert [r["view"] for r in pair] == ["CC", "MLO"]
        assert len({(r["laterality"], r["age"], r["pixel_spacing_mm"]) for r in pair}) == 1
        assert 31 <= int(pair[0]["age"]) <= 75
    assert {r["laterality"] for r in table} == {"L", "R"}
    assert {Path(r["file"]).suffix for r in table} == {".png", ".dcm"}
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    normal = [r for r in table if r["n_clusters"] == "0"]
    assert 0 < len(normal) < len(table)


def test_cli_writes_the_same_data_set_as_the_library(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    argv = ["synth", str(out), "--count", "2", "--seed", "3", "--height", "448", "--width", "384", "--formats", "png"]
    assert plaid_main(argv) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["SYN0001_R_CC.png", "SYN0001_R_MLO.png"]
    assert len(list((out / "labels" / "final").glob("*.png"))) == 2
    assert (out / "metadata.csv").is_file()
    library = generate_dataset(tmp_path / "lib", 2, seed=3, height=448, width=384, formats=("png",))
    for row in library:
        np.testing.assert_array_equal(
            read_mammogram(out / row["file"]).pixels, read_mammogram(tmp_path / "lib" / row["file"]).pixels
        )
    with pytest.raises(SystemExit):
        plaid_main(["synth", str(out), "--formats", "jpg"])

"""Physical scale: spacing sources, resampling before tiling, and results mapped back to the original grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.io.dicom import write_dicom_mammogram
from plaid.io.images import ImageMeta
from plaid.io.labels import write_label_png
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.patches.prepared import PatchSettings, prepare_image
from plaid.patches.spacing import image_spacing, resample_image, resample_mask, target_shape, to_original_grid
from plaid.train.insertion import InsertedPositives, clustered_patch, insert_cluster


def test_spacing_comes_from_header_then_metadata_then_flag() -> None:
    assert image_spacing(0.07, 0.2, 0.1) == 0.07
    assert image_spacing(None, 0.2, 0.1) == 0.2
    assert image_spacing(None, None, 0.1) == 0.1
    assert image_spacing(None, None, None) is None
    settings = PatchSettings(pixel_spacing_mm=0.15, target_spacing_mm=0.1)
    assert settings.spacing_of(CaseRecord(image="a.png"), ImageMeta(pixel_spacing_mm=(0.05, 0.05))) == 0.05
    assert settings.spacing_of(CaseRecord(image="a.png", pixel_spacing_mm=0.2), ImageMeta()) == 0.2
    assert settings.working_shape(CaseRecord(image="a.png"), ImageMeta(), (100, 80)) == (150, 120)


@pytest.mark.parametrize(("spacing", "target"), [(0.2, 0.07), (0.07, 0.2), (0.1, 0.13)])
def test_resampling_round_trips_to_the_exact_original_shape(spacing: float, target: float) -> None:
    shape = (517, 389)
    working = target_shape(shape, spacing, target)
    assert working == (round(517 * spacing / target), round(389 * spacing / target))
    pixels = np.random.default_rng(0).random(shape).astype(np.float32)
    assert resample_image(pixels, working).shape == working
    mask = np.zeros(shape, dtype=bool)
    mask[300, 200] = True                                   # a one-pixel calcification
    small = resample_mask(mask, working)
    assert small.shape == working and small.any()           # survives shrinking
    back = to_original_grid(small, shape)
    assert back.shape == shape and back[300, 200]           # and comes back where it was
    rows, cols = np.nonzero(back)
    assert np.abs(rows - 300).max() <= shape[0] / working[0] + 1
    assert np.abs(cols - 200).max() <= shape[1] / working[1] + 1
    identity = np.arange(np.prod(shape)).reshape(shape)
    assert np.array_equal(to_original_grid(identity, shape), identity)


def _film(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.where((rows - shape[0] / 2) ** 2 + cols**2 < (0.7 * shape[1]) ** 2, 2400.0, 80.0)


def test_prepare_image_tiles_at_the_target_spacing(tmp_path: Path) -> None:
    shape = (300, 260)
    image = tmp_path / "a.png"
    Image.fromarray(_film(shape).astype(np.uint16)).save(image)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[250, 20] = 1
    label = write_label_png(tmp_path / "a_mask.png", mask)
    record = CaseRecord(image=str(image), label=str(label), pixel_spacing_mm=0.2)
    prepared = prepare_image(record, PatchSettings(patch_size=112, target_spacing_mm=0.1))
    assert prepared.pixels.shape == (600, 520) and prepared.grid.shape == (6, 5)
    assert np.flatnonzero(prepared.labels).tolist() == [4 * 5 + 0]   # row 500 of 600 -> patch row 4
    native = prepare_image(CaseRecord(image=str(image), label=str(label), pixel_spacing_mm=0.2),
                           PatchSettings(patch_size=112))
    assert native.pixels.shape == shape
    assert prepared.spacing_mm_tiled == 0.1 and native.spacing_mm_tiled == 0.2


def test_inserted_clusters_are_sized_for_the_grid_the_patches_were_cut_from(tmp_path: Path) -> None:
    """Specks pasted into a 0.2 mm film resampled to 0.1 mm are drawn with 0.1 mm pixels (twice as many
    pixels across), not with the file's own spacing."""
    shape = (300, 260)
    image = tmp_path / "a.png"
    Image.fromarray(_film(shape).astype(np.uint16)).save(image)
    record = CaseRecord(image=str(image), pixel_spacing_mm=0.2)
    prepared = prepare_image(record, PatchSettings(patch_size=112, target_spacing_mm=0.1), with_label=False)
    rows = np.stack([np.zeros(int(prepared.tissue.sum()), dtype=np.int64), np.flatnonzero(prepared.tissue)], axis=1)
    inserted = InsertedPositives([prepared], rows, count=4, seed=3)
    for item in range(len(inserted)):
        drawn, _, drawn_number = inserted.draw(item)
        patch = clustered_patch(prepared, drawn_number, drawn)
        rng = np.random.default_rng([3, item])
        _, patch_number = rows[int(rng.integers(len(rows)))]
        tissue = prepared.patches([int(patch_number)])[0]
        expected, _ = insert_cluster(tissue, 0.1, rng)
        np.testing.assert_array_equal(patch, expected)


def test_predictor_infers_at_the_checkpoint_spacing_and_maps_back(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(
        tmp_path / "m.pt", build_model(pretrained=False), threshold=0.0,
        config={"patch_size": 224, "target_spacing_mm": 0.1, "tta_flips": True},
        patch_settings={"patch_size": 224, "target_spacing_mm": 0.1, "pixel_spacing_mm": None},
    )
    predictor = PatchPredictor(checkpoint, InferConfig(device="cpu", batch_size=4))
    assert predictor.scoring_config().tta_flips is True
    shape = (300, 260)
    path = tmp_path / "a.dcm"
    write_dicom_mammogram(path, _film(shape), pixel_spacing_mm=0.2)
    prediction = predictor.predict(_film(shape), spacing_mm=0.2)
    assert (prediction.grid.height, prediction.grid.width) == (600, 520) and prediction.grid.shape == (3, 3)
    mask = prediction.label_mask()
    assert mask.shape == shape and prediction.probability_map().shape == shape
    boxes = np.array([entry["box"] for entry in prediction.summary()["positives"]])
    assert len(boxes) and boxes[:, 2].max() <= shape[0] and boxes[:, 3].max() <= shape[1]
    for top, left, bottom, right in boxes:                    # every positive box is marked in the mask
        assert mask[top:bottom, left:right].all()
    unknown = predictor.predict(_film(shape))                 # spacing unknown: scored at its own pixels
    assert unknown.source_shape is None and unknown.label_mask().shape == shape

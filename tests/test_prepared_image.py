"""The prepared image: patches are views of one padded array, and predictions through it match the plain path."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.errors import ImageReadError
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.io.images import read_mammogram
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.patches.grid import PatchGrid
from plaid.patches.prefetch import prefetched, preparation_processes
from plaid.patches.prepared import PatchSettings, prepare, prepare_file, prepare_image, process_records, to_unit_uint16
from plaid.patches.tissue import tissue_mask, tissue_patches

SAMPLE = Path(__file__).resolve().parents[1] / "sample-data"


def _sliced(unit: np.ndarray, grid: PatchGrid, indices: np.ndarray) -> np.ndarray:
    """Patches cut by plain slicing of a zero-padded copy (the reference the views must match)."""
    padded = np.zeros(grid.padded_shape(), dtype=unit.dtype)
    padded[: unit.shape[0], : unit.shape[1]] = unit
    size = grid.patch_size
    return np.stack([padded[top : top + size, left : left + size] for top, left in grid.origins()[indices]])


@pytest.mark.parametrize("stride", [None, 112])
def test_patches_are_views_equal_to_one_shot_extraction(stride: int | None, rng: np.random.Generator) -> None:
    pixels = rng.normal(1000, 200, (500, 700)).astype(np.float32)
    image = prepare(pixels, PatchSettings(stride=stride, skip_background=False))
    expected = _sliced(to_unit_uint16(pixels), image.grid, np.arange(len(image.grid)))
    for index in (0, len(image.grid) // 2, len(image.grid) - 1):
        view = image.patch_view(index)
        assert np.shares_memory(view, image.padded)
        np.testing.assert_array_equal(view, expected[index])
    chosen = np.array([len(image.grid) - 1, 0, 3])
    np.testing.assert_allclose(image.patches(chosen), expected[chosen] / 65535.0, rtol=1e-6)
    assert image.pixels.shape == pixels.shape and np.shares_memory(image.pixels, image.padded)


def test_labelled_record_keeps_mask_only_when_asked() -> None:
    record = CaseRecord(image=str(SAMPLE / "SYN0001_R_CC.png"), label=str(SAMPLE / "labels/final/SYN0001_R_CC.png"))
    lean = prepare_image(record, PatchSettings())
    full = prepare_image(record, PatchSettings(), keep_mask=True)
    assert lean.label_mask is None and full.label_mask is not None and full.label_mask.shape == full.shape
    assert lean.labels is not None and lean.labels.any()
    np.testing.assert_array_equal(lean.labels, full.labels)


def test_predictions_on_sample_data_match_the_plain_path(tmp_path: Path) -> None:
    """Same weights: the prepared-image predictor against read -> normalise -> pad/cut per batch -> fp32 model."""
    torch.manual_seed(7)
    model = build_model(pretrained=False).eval()
    checkpoint = save_checkpoint(tmp_path / "m.pt", model)
    predictor = PatchPredictor(checkpoint, InferConfig(batch_size=16))
    path = SAMPLE / "SYN0002_L_MLO.dcm"
    prediction = predictor.predict_prepared(prepare_file(path, predictor.patch_settings()))

    pixels = read_mammogram(path).pixels
    grid = prediction.grid
    tissue = tissue_patches(tissue_mask(pixels), grid)
    np.testing.assert_array_equal(prediction.scored, tissue)
    indices = np.flatnonzero(tissue)
    with torch.inference_mode():
        patches = torch.from_numpy(_sliced(to_unit_uint16(pixels), grid, indices).astype(np.float32) / 65535)
        plain = torch.sigmoid(torch.cat([model(batch[:, None]) for batch in patches.split(16)])).numpy()
    assert np.abs(prediction.probabilities[indices] - plain).max() <= 0.01
    assert not prediction.probabilities[~tissue].any()


def test_prefetched_keeps_order_and_reraises_errors_in_place() -> None:
    def work(value: int) -> int:
        if value == 3:
            raise ValueError("three")
        return value * 10

    seen = []
    for item, future in prefetched(list(range(6)), work, workers=2):
        if item == 3:
            with pytest.raises(ValueError, match="three"):
                future.result()
        else:
            seen.append(future.result())
    assert seen == [0, 10, 20, 40, 50]


def test_process_records_with_prepare_skips_unreadable_images(tmp_path: Path) -> None:
    records = [CaseRecord(image=str(SAMPLE / "SYN0001_R_CC.png")), CaseRecord(image=str(tmp_path / "gone.png"))]
    results, problems = process_records(records, lambda image: image.grid.shape,
                                        prepare=lambda record: prepare_file(record.image, PatchSettings()))
    assert len(results) == 1 and len(problems) == 1 and "gone.png" in problems[0].path
    with pytest.raises(ImageReadError):
        process_records(records, lambda image: image, on_error="stop",
                        prepare=lambda record: prepare_file(record.image, PatchSettings()))


def test_images_prepared_in_worker_processes_arrive_with_working_views() -> None:
    paths = [SAMPLE / "SYN0001_R_CC.png", SAMPLE / "SYN0003_R_MLO.png"]
    produce = functools.partial(prepare_file, settings=PatchSettings())
    with preparation_processes(1) as pool:
        received = [future.result() for _, future in prefetched(paths, produce, executor=pool)]
    for path, image in zip(paths, received, strict=True):
        local = prepare_file(path, PatchSettings())
        np.testing.assert_array_equal(image.tissue, local.tissue)
        assert np.shares_memory(image.patch_view(5), image.padded)
        np.testing.assert_array_equal(image.patch_view(5), local.patch_view(5))


def test_integer_pixels_normalise_through_the_table_exactly_as_floats(rng: np.random.Generator) -> None:
    stored = rng.integers(0, 4096, (300, 500)).astype(np.uint16)
    settings = PatchSettings(skip_background=False)
    from_integers = prepare(stored, settings)
    np.testing.assert_array_equal(from_integers.padded, prepare(stored.astype(np.float32), settings).padded)
    np.testing.assert_array_equal(from_integers.pixels, to_unit_uint16(stored.astype(np.float32)))
    assert not from_integers.padded[300:].any() and not from_integers.padded[:, 500:].any()

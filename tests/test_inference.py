"""The shared predictor: tissue skipping, grid-aligned masks, thresholds, and hot reload of new weights."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.patches.grid import PatchGrid


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", build_model(pretrained=False), threshold=0.42)


def _half_breast(height: int = 500, width: int = 700) -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = rng.normal(40, 5, (height, width)).astype(np.float32)
    pixels[:, : width // 2] += 2000 + rng.normal(0, 200, (height, width // 2)).astype(np.float32)
    return pixels


def test_background_patches_are_skipped_and_mask_has_image_shape(checkpoint: Path) -> None:
    pixels = _half_breast()
    prediction = PatchPredictor(checkpoint, InferConfig(batch_size=4)).predict(pixels)
    grid = PatchGrid(500, 700)
    assert prediction.grid == grid
    assert prediction.scored.sum() < len(grid)  # the dark right half is not scored
    rows, cols = grid.shape
    scored = prediction.scored.reshape(rows, cols)
    assert scored[:, 0].all() and not scored[:, -1].any()
    assert prediction.threshold == pytest.approx(0.42)  # the checkpoint's operating point
    mask = prediction.label_mask()
    assert mask.shape == pixels.shape and mask.dtype == np.uint8
    assert prediction.probability_map().shape == pixels.shape
    summary = prediction.summary()
    assert summary["patches_scored"] + summary["patches_skipped"] == len(grid)
    assert summary["patches_positive"] == len(summary["positives"])


def test_threshold_zero_marks_every_scored_patch(checkpoint: Path) -> None:
    pixels = _half_breast()
    prediction = PatchPredictor(checkpoint, InferConfig(threshold=0.0)).predict(pixels)
    np.testing.assert_array_equal(prediction.positive, prediction.scored)
    expected = np.zeros(pixels.shape, dtype=np.uint8)
    for top, left, bottom, right in prediction.grid.boxes()[prediction.scored]:
        expected[top:bottom, left:right] = 1
    np.testing.assert_array_equal(prediction.label_mask(), expected)


def test_batched_channels_last_path_agrees_with_fp32_single_patches(checkpoint: Path) -> None:
    pixels = _half_breast(448, 448)
    fast = PatchPredictor(checkpoint, InferConfig(batch_size=8, runtime="torch-fp32-cl"))
    slow = PatchPredictor(checkpoint, InferConfig(batch_size=1, runtime="torch-fp32"))
    assert fast.runtime().name == "torch-fp32-cl" and slow.runtime().name == "torch-fp32"
    np.testing.assert_allclose(fast.predict(pixels).probabilities, slow.predict(pixels).probabilities, atol=0.01)


def test_new_checkpoint_is_picked_up_without_restart(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "live.pt"
    path.write_bytes(checkpoint.read_bytes())
    predictor = PatchPredictor(path)
    pixels = _half_breast(448, 448)
    before = predictor.predict(pixels).probabilities
    torch.manual_seed(99)
    save_checkpoint(path, build_model(pretrained=False), threshold=0.9)
    os.utime(path, (time.time() + 5, time.time() + 5))
    after = predictor.predict(pixels)
    assert after.threshold == pytest.approx(0.9)
    assert not np.allclose(before, after.probabilities)

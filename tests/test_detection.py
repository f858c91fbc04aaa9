"""A short training on the shipped sample data learns to mark a strong calcification cluster.

This test checks what the model learns, not only that the code runs: it trains with the demo's recipe
(recipes/sample-data-demo.json: a ResNet18 with the contrast front end, random initialisation since no
ImageNet weights are available offline) on the committed sample data for a few epochs, then scores a new
synthetic mammogram with a strong cluster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import load_records
from plaid.patches.labels import patch_labels_from_mask
from plaid.synth.generator import synthesize_case
from plaid.train.recipes import config_with_overrides
from plaid.train.records import train_from_records
from plaid_dev.serving import DEMO_RECIPE, REPO_ROOT

pytestmark = pytest.mark.slow

DETECTION_EPOCHS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sample") / "data"
    shutil.copytree(REPO_ROOT / "sample-data", data)
    config = config_with_overrides(DEMO_RECIPE, {"epochs": DETECTION_EPOCHS, "val_fraction": 0.2, "seed": 0})
    result = train_from_records(load_records(data), config, data.parent / "run", progress=False)
    assert result.best_checkpoint is not None
    return result.best_checkpoint


def test_strong_cluster_is_marked_and_far_background_is_not(trained: Path) -> None:
    case = synthesize_case(height=1120, width=1344, seed=2024, view="CC", laterality="R", n_clusters=1,
                           specks_per_cluster=(8, 12), speck_amplitude=(1000.0, 1200.0))
    pixels = case.pixels.astype(np.float32)
    predictor = PatchPredictor(trained, InferConfig(batch_size=16, skip_background=False), checkpoint_settings=False)
    prediction = predictor.predict(pixels)
    truth = patch_labels_from_mask(case.calcification_mask, prediction.grid)
    cluster_patches = np.flatnonzero(truth)
    assert cluster_patches.size
    assert prediction.positive[cluster_patches].any(), (prediction.probabilities[cluster_patches],
                                                        prediction.threshold)
    rows, cols = prediction.grid.shape
    cluster_rc = np.array(np.unravel_index(cluster_patches, (rows, cols)))
    breast_fraction = np.array([case.breast_mask[top:bottom, left:right].mean()
                                for top, left, bottom, right in prediction.grid.boxes()])
    patch_rc = np.array(np.unravel_index(np.arange(len(prediction.grid)), (rows, cols)))
    # Chebyshev distance in patches from the nearest cluster patch
    distance = np.abs(patch_rc[:, :, None] - cluster_rc[:, None, :]).max(axis=0).min(axis=1)
    far = distance >= 2
    far_background = np.flatnonzero(far & (breast_fraction == 0))
    far_tissue = np.flatnonzero(far & (breast_fraction > 0.5))
    assert far_background.size and far_tissue.size
    assert not prediction.positive[far_background].any()
    assert prediction.probabilities[cluster_patches].max() > np.median(prediction.probabilities[far_tissue])

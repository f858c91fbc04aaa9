"""A short training on the shipped sample data learns to mark a strong calcification cluster.

This is the one test that checks what the model learns, not only that the code runs: it trains the
real ResNet50 (random initialisation, since no ImageNet weights are available offline) on the
committed sample data, then scores a new synthetic mammogram with a strong cluster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from plaid.datalist import load_records
from plaid.inference import InferConfig, PatchPredictor
from plaid.patch_labels import patch_labels_from_mask
from plaid.serving import REPO_ROOT
from plaid.synth import synthesize_case
from plaid.training import TrainConfig, train_from_records

pytestmark = pytest.mark.slow

DETECTION_EPOCHS = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sample") / "data"
    shutil.copytree(REPO_ROOT / "sample-data", data)
    config = TrainConfig(epochs=DETECTION_EPOCHS, batch_size=16, val_fraction=0.2, seed=0)
    result = train_from_records(load_records(data), config, data.parent / "run", progress=False)
    assert result.best_checkpoint is not None
    return result.best_checkpoint


def test_strong_cluster_is_marked_and_far_tissue_is_not(trained: Path) -> None:
    case = synthesize_case(height=1120, width=896, seed=2024, view="CC", laterality="R", n_clusters=1)
    predictor = PatchPredictor(trained, InferConfig(batch_size=16))
    prediction = predictor.predict(case.pixels.astype(np.float32))
    truth = patch_labels_from_mask(case.calcification_mask, prediction.grid)
    assert truth.any()
    cluster_patches = np.flatnonzero(truth)
    assert prediction.positive[cluster_patches].any(), prediction.probabilities[cluster_patches]
    rows, cols = prediction.grid.shape
    centre = np.array(np.unravel_index(cluster_patches, (rows, cols))).mean(axis=1)
    far = [
        i for i in np.flatnonzero(prediction.scored & ~truth)
        if np.abs(np.array(np.unravel_index(i, (rows, cols))) - centre).max() >= 3
    ]
    assert far, "the test image needs tissue far from the cluster"
    false_marks = int(prediction.positive[far].sum())
    assert false_marks <= len(far) // 10, (false_marks, len(far))
    assert prediction.probabilities[cluster_patches].max() > np.median(prediction.probabilities[far])

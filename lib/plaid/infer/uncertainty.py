"""Uncertainty of patch predictions: binary entropy per patch and summed over an image's tissue patches (used by
the active-learning strategies in `plaid.activelearning.strategies`)."""

from __future__ import annotations

import numpy as np


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in bits of each Bernoulli probability (0 at 0 and 1, 1 at 0.5)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def total_patch_entropy(probabilities: np.ndarray) -> float:
    """Sum of patch entropies: roughly the number of patches the model cannot decide."""
    return float(binary_entropy(probabilities).sum()) if len(probabilities) else 0.0

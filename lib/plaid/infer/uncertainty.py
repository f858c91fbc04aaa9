"""Image-level uncertainty of patch predictions, used to pick the next image to annotate.

The score is the total binary entropy (bits) over the image's tissue patches. An image gets a high score
when it has many patches near the decision boundary; confident patches add almost nothing, so large
images full of clear normal tissue do not outrank small images with a few ambiguous findings.
"""

from __future__ import annotations

import numpy as np

SCORE_KEY = "plaid_uncertainty"
MODEL_KEY = "plaid_uncertainty_model"


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in bits of each Bernoulli probability (0 at 0 and 1, 1 at 0.5)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def total_patch_entropy(probabilities: np.ndarray) -> float:
    """Sum of patch entropies: roughly the number of patches the model cannot decide."""
    return float(binary_entropy(probabilities).sum()) if len(probabilities) else 0.0

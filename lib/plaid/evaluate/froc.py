"""FROC-style analysis: sensitivity for calcified regions versus false-positive patches per image.

A region is a cluster of the ground-truth mask (`plaid.patches.regions`: marks linked by gaps of at most a few
millimetres, the same rule the importers count with). One label rule decides hits and false positives: a patch
labelled calcified (`plaid.patches.labels`, annotated fraction above ``min_overlap``) detects every region it
touches when it scores at or above the threshold; a patch labelled normal that does is a false positive. A patch
is never both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plaid.patches.grid import PatchGrid
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM, calcification_regions

STANDARD_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def region_scores(mask: np.ndarray, grid: PatchGrid, patch_scores: np.ndarray, calcified: np.ndarray,
                  spacing_mm: float | None = None, cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM) -> np.ndarray:
    """For every region (cluster) of ``mask``, the highest score among the calcified-labelled patches
    (``calcified``, per grid patch) it touches; -inf for a region no such patch touches."""
    components, count = calcification_regions(mask, spacing_mm, cluster_gap_mm)
    best = np.full(count, -np.inf)
    if count == 0:
        return best
    boxes = grid.boxes()
    for patch in np.flatnonzero(np.asarray(calcified, dtype=bool)):
        top, left, bottom, right = boxes[patch]
        present = np.unique(components[top:bottom, left:right])
        present = present[present > 0] - 1
        best[present] = np.maximum(best[present], float(patch_scores[patch]))
    return best


@dataclass(frozen=True)
class FrocCurve:
    """Operating points over every distinct score, highest threshold first."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    fp_per_image: np.ndarray
    regions: int
    images: int

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """(region sensitivity, false-positive patches per image) when scores >= ``threshold`` are positive."""
        reached = np.flatnonzero(self.thresholds >= threshold)
        if reached.size == 0:
            return 0.0, 0.0
        last = int(reached[-1])
        return float(self.sensitivity[last]), float(self.fp_per_image[last])

    def sensitivity_at_rates(self, rates: tuple[float, ...] = STANDARD_FP_RATES) -> dict[str, float]:
        """Best region sensitivity reachable with at most each given number of false-positive patches per image."""
        out: dict[str, float] = {}
        for rate in rates:
            allowed = self.fp_per_image <= rate
            out[f"{rate:g}"] = float(self.sensitivity[allowed].max()) if allowed.any() else 0.0
        return out

    def points(self, limit: int = 200) -> list[dict[str, float]]:
        """At most ``limit`` evenly spread curve points, JSON-ready."""
        picks = np.unique(np.linspace(0, len(self.thresholds) - 1, min(limit, len(self.thresholds))).astype(int))
        return [
            {"threshold": float(self.thresholds[i]), "sensitivity": float(self.sensitivity[i]),
             "fp_per_image": float(self.fp_per_image[i])}
            for i in picks
        ]


def froc_curve(regions: np.ndarray, negative_scores: np.ndarray, images: int) -> FrocCurve:
    """The FROC curve from per-region best scores and the scores of patches without calcification."""
    regions = np.asarray(regions, dtype=np.float64).ravel()
    negatives = np.asarray(negative_scores, dtype=np.float64).ravel()
    finite_regions = regions[np.isfinite(regions)]
    values = np.unique(np.concatenate([finite_regions, negatives]))[::-1]
    thresholds = np.r_[np.inf, values]
    sorted_regions = np.sort(finite_regions)
    sorted_negatives = np.sort(negatives)
    detected = len(sorted_regions) - np.searchsorted(sorted_regions, thresholds, side="left")
    false_pos = len(sorted_negatives) - np.searchsorted(sorted_negatives, thresholds, side="left")
    sensitivity = detected / len(regions) if len(regions) else np.full(len(thresholds), np.nan)
    fp_rate = false_pos / images if images else np.full(len(thresholds), np.nan)
    return FrocCurve(thresholds=thresholds, sensitivity=np.asarray(sensitivity, dtype=np.float64),
                     fp_per_image=np.asarray(fp_rate, dtype=np.float64), regions=len(regions), images=images)

"""Seeded bootstrap confidence intervals that resample whole patients (or images), never single patches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plaid.metrics import confusion_at, roc_auc


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile intervals of AUC, sensitivity and specificity over the resamples where they exist."""

    confidence: float
    iterations: int
    groups: int
    auc: tuple[float, float]
    sensitivity: tuple[float, float]
    specificity: tuple[float, float]
    auc_resamples: int
    sensitivity_resamples: int
    specificity_resamples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "confidence": self.confidence,
            "iterations": self.iterations,
            "unit": "patient (image when no patient id)",
            "groups": self.groups,
            "auc": list(self.auc),
            "sensitivity": list(self.sensitivity),
            "specificity": list(self.specificity),
            "resamples_used": {"auc": self.auc_resamples, "sensitivity": self.sensitivity_resamples,
                               "specificity": self.specificity_resamples},
        }


def _interval(values: list[float], confidence: float) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(np.asarray(values), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_metrics(
    groups: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    iterations: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Resample the groups (patients) with replacement ``iterations`` times; percentile intervals.

    Each resample takes every patch of each drawn group (a group drawn twice counts twice). A statistic
    is skipped in resamples where it is undefined (e.g. AUC without any positive patch); the number of
    resamples that did count is reported.
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    names, owner = np.unique(groups, return_inverse=True)
    rows_of = [np.flatnonzero(owner == number) for number in range(len(names))]
    rng = np.random.default_rng(seed)
    aucs: list[float] = []
    sens: list[float] = []
    specs: list[float] = []
    for _ in range(max(0, int(iterations))):
        drawn = rng.integers(0, len(names), len(names)) if len(names) else np.zeros(0, dtype=int)
        rows = np.concatenate([rows_of[g] for g in drawn]) if len(drawn) else np.zeros(0, dtype=int)
        sample_labels, sample_scores = labels[rows], scores[rows]
        positives = int(sample_labels.sum())
        if 0 < positives < len(rows):
            aucs.append(roc_auc(sample_labels, sample_scores))
        summary = confusion_at(sample_labels, sample_scores, threshold)
        if positives:
            sens.append(summary.sensitivity)
        if positives < len(rows):
            specs.append(summary.specificity)
    return BootstrapResult(
        confidence=confidence, iterations=int(iterations), groups=len(names),
        auc=_interval(aucs, confidence), sensitivity=_interval(sens, confidence),
        specificity=_interval(specs, confidence), auc_resamples=len(aucs), sensitivity_resamples=len(sens),
        specificity_resamples=len(specs),
    )

"""Binary classification measures shared by training (validation, operating point) and evaluation.

Taken from scikit-learn, with thin wrappers that fix PLAID's rules: the ROC curve (`roc_curve`: every distinct
score, ties merged into one step, first point at +inf), the ROC AUC (`roc_auc`, and `safe_auc`, NaN with one class
or a non-finite score) and the confusion counts at a threshold (`confusion_at`: ``score >= threshold`` is
positive; a rate without a denominator is NaN). PLAID's own code, where no maintained library has the measure:
the slope-1 operating point of the paper (`operating_point`, ties to the higher threshold) and the false-marks
threshold (`false_marks_threshold`). The region FROC by patch is in `plaid.evaluate.froc`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn import metrics as sk_metrics


@dataclass(frozen=True)
class RocCurve:
    """ROC curve points (descending thresholds); the first point is (0, 0) at threshold +inf."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class OperatingPoint:
    """The ROC point touched by a slope-1 line with the largest intercept (max TPR - FPR, Youden's J)."""

    threshold: float
    fpr: float
    tpr: float
    youden_j: float


@dataclass(frozen=True)
class ConfusionSummary:
    """Counts and rates at one threshold."""

    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    accuracy: float
    sensitivity: float
    specificity: float

    def to_dict(self) -> dict[str, float | int]:
        """The summary as a plain dict."""
        return asdict(self)


def _as_arrays(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and flatten labels (0/1) and scores of equal length."""
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.shape}) and scores ({scores.shape}) differ in length")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels.astype(np.int64), scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> RocCurve:
    """ROC curve over every distinct score (scikit-learn's, no point dropped), tied scores merged into one step."""
    labels, scores = _as_arrays(labels, scores)
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("ROC needs at least one positive and one negative sample")
    fpr, tpr, thresholds = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    thresholds = np.asarray(thresholds, dtype=np.float64).copy()
    thresholds[0] = np.inf  # the (0, 0) corner, whatever sentinel the installed release uses
    return RocCurve(fpr=np.asarray(fpr, dtype=np.float64), tpr=np.asarray(tpr, dtype=np.float64),
                    thresholds=thresholds)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's; ties count as half); ValueError with one class only."""
    labels, scores = _as_arrays(labels, scores)
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("ROC needs at least one positive and one negative sample")
    return float(sk_metrics.roc_auc_score(labels, scores))


def operating_point(labels: np.ndarray, scores: np.ndarray) -> OperatingPoint:
    """The paper's operating point: where a slope-1 line with the highest intercept touches the ROC curve.

    A line ``tpr = fpr + c`` touches the curve last at the point maximising ``tpr - fpr``; ties go to the
    higher threshold (fewer false positives).
    """
    curve = roc_curve(labels, scores)
    youden = curve.tpr - curve.fpr
    best = int(np.argmax(youden))
    threshold = float(curve.thresholds[best])
    if not np.isfinite(threshold):  # the (0, 0) corner: a threshold just above every score
        threshold = float(np.nextafter(np.max(np.asarray(scores, dtype=np.float64)), np.inf))
    return OperatingPoint(threshold=threshold, fpr=float(curve.fpr[best]), tpr=float(curve.tpr[best]),
                          youden_j=float(youden[best]))


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ConfusionSummary:
    """Counts, accuracy, sensitivity and specificity when ``score >= threshold`` is called positive."""
    labels, scores = _as_arrays(labels, scores)
    predicted = (scores >= threshold).astype(np.int64)
    counts = sk_metrics.confusion_matrix(labels, predicted, labels=[0, 1]) if labels.size else np.zeros((2, 2))
    tn, fp, fn, tp = (int(value) for value in counts.ravel())
    total = tp + fp + tn + fn
    return ConfusionSummary(
        threshold=float(threshold),
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        accuracy=(tp + tn) / total if total else float("nan"),
        sensitivity=tp / (tp + fn) if tp + fn else float("nan"),
        specificity=tn / (tn + fp) if tn + fp else float("nan"),
    )


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when only one class is present or any score is not a finite number."""
    labels = np.asarray(labels).ravel()
    if labels.size == 0 or labels.min() == labels.max() or not np.all(np.isfinite(np.asarray(scores, float))):
        return float("nan")
    return roc_auc(labels, scores)


def false_marks_threshold(negative_scores: np.ndarray, films: int, max_per_film: float) -> float:
    """The lowest threshold at which normal patches scoring at or above it number at most ``max_per_film`` per
    film on average (the lowest negative score when every one is allowed). ValueError without any normal patch:
    there is nothing to choose on."""
    scores = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())[::-1]
    if films < 1 or max_per_film < 0:
        raise ValueError(f"need at least one film and a non-negative allowance, got {films} and {max_per_film}")
    if scores.size == 0:
        raise ValueError("no normal patch to choose a false-marks threshold on")
    allowed = int(np.floor(max_per_film * films + 1e-9))
    if allowed >= scores.size:
        return float(scores[-1])
    # one float32 step above the first patch past the allowance: above it whether probabilities are compared
    # in float32 (as the predictor holds them) or float64
    return float(np.nextafter(np.float32(scores[allowed]), np.float32(np.inf)))

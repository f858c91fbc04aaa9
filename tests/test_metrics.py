"""Metrics agree with scikit-learn; the operating point matches a hand-computed ROC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from plaid.metrics import confusion_at, operating_point, roc_auc, roc_curve


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_rates_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.random(400) * 0.7 + labels * 0.3, 2)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    curve = roc_curve(labels, scores)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    summary = confusion_at(labels, scores, 0.5)
    predicted = (scores >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted).ravel()
    assert summary.accuracy == pytest.approx(accuracy_score(labels, predicted))
    assert summary.sensitivity == pytest.approx(tp / (tp + fn))
    assert summary.specificity == pytest.approx(tn / (tn + fp))


def test_operating_point_hand_computed() -> None:
    # scores, sorted: 0.9(P) 0.8(P) 0.7(N) 0.6(P) 0.4(N) 0.3(N) 0.2(P) 0.1(N)
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    # ROC points (fpr, tpr): (0,0) (0,.25) (0,.5) (.25,.5) (.25,.75) (.5,.75) (.75,.75) (.75,1) (1,1)
    # tpr - fpr is largest (0.5) at (0, 0.5) and (0.25, 0.75); the higher threshold wins the tie.
    point = operating_point(labels, scores)
    assert (point.fpr, point.tpr, point.threshold) == (0.0, 0.5, 0.8)
    assert point.youden_j == pytest.approx(0.5)
    assert roc_auc(labels, scores) == pytest.approx(0.75)


def test_single_class_is_rejected() -> None:
    with pytest.raises(ValueError):
        roc_curve(np.ones(5), np.random.default_rng(0).random(5))


def test_operating_point_threshold_reproduces_its_rates() -> None:
    # A model that ranks every negative first: the best slope-1 point is the (0, 0) corner.
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    point = operating_point(labels, scores)
    assert (point.fpr, point.tpr) == (0.0, 0.0)
    summary = confusion_at(labels, scores, point.threshold)
    assert summary.true_positives == 0 and summary.false_positives == 0

"""Figures written by the CLI: training curves (paper Figure 5), ROC with the slope-1 operating point, FROC."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plaid.evaluate.froc import FrocCurve
from plaid.metrics import OperatingPoint, RocCurve


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_png, dpi=110)
    _pyplot().close(figure)
    return out_png


def _series(history: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if item.get(key) is None else float(item[key]) for item in history], dtype=np.float64)


def plot_training_curves(history: Sequence[dict[str, Any]], out_png: str | Path) -> Path:
    """Accuracy and loss per epoch, training versus validation, side by side (from history.json entries)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([int(item["epoch"]) for item in history])
    figure, (acc_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((acc_axis, "accuracy", "Accuracy"), (loss_axis, "loss", "Loss")):
        axis.plot(epochs, _series(history, f"train_{key}"), marker="o", markersize=3, label="training")
        axis.plot(epochs, _series(history, f"val_{key}"), marker="o", markersize=3, label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(label.lower())
        axis.set_title(f"Model {label.lower()}")
        axis.grid(alpha=0.3)
        axis.legend()
    acc_axis.set_ylim(-0.02, 1.02)
    return _save(figure, out_png)


def plot_roc(
    curve: RocCurve,
    auc: float,
    out_png: str | Path,
    operating: OperatingPoint | None = None,
    at_threshold: tuple[float, float, float] | None = None,
    title: str = "ROC",
) -> Path:
    """ROC curve; marks the slope-1 operating point (with its tangent line) and the point at the threshold used.

    ``at_threshold`` is (threshold, false-positive rate, true-positive rate).
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 5))
    axis.plot(curve.fpr, curve.tpr, color="tab:blue", label=f"ROC (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    if operating is not None:
        intercept = operating.tpr - operating.fpr
        xs = np.linspace(0, 1 - intercept, 2)
        axis.plot(xs, xs + intercept, color="tab:orange", linestyle="--", linewidth=1)
        axis.scatter([operating.fpr], [operating.tpr], color="tab:orange", zorder=3,
                     label=f"slope-1 point, chosen on these patches (t={operating.threshold:.3f})")
    if at_threshold is not None:
        threshold, fpr, tpr = at_threshold
        axis.scatter([fpr], [tpr], color="tab:red", marker="x", s=60, zorder=4, label=f"threshold {threshold:.3f}")
    axis.set_xlim(-0.01, 1.01)
    axis.set_ylim(-0.01, 1.01)
    axis.set_xlabel("false-positive rate (1 - specificity)")
    axis.set_ylabel("true-positive rate (sensitivity)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, out_png)


def plot_froc(curve: FrocCurve, out_png: str | Path, at_threshold: tuple[float, float, float] | None = None) -> Path:
    """Region sensitivity versus false-positive patches per image; marks the threshold used.

    ``at_threshold`` is (threshold, false positives per image, sensitivity).
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 4.4))
    finite = np.isfinite(curve.fp_per_image) & np.isfinite(curve.sensitivity)
    axis.step(curve.fp_per_image[finite], curve.sensitivity[finite], where="post", color="tab:blue",
              label=f"{curve.regions} regions, {curve.images} images")
    if at_threshold is not None:
        threshold, fp_rate, sensitivity = at_threshold
        axis.scatter([fp_rate], [sensitivity], color="tab:red", marker="x", s=60, zorder=3,
                     label=f"threshold {threshold:.3f}")
    if finite.any() and curve.fp_per_image[finite].max() > 0:
        axis.set_xscale("symlog", linthresh=0.1)
    axis.set_ylim(-0.01, 1.01)
    axis.set_xlabel("false-positive patches per image")
    axis.set_ylabel("sensitivity (calcified regions)")
    axis.set_title("FROC (all tissue patches)")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, out_png)

"""The two evaluation protocols over scored patches.

* paper protocol: a balanced patch set (every calcified patch plus as many random tissue patches, seeded;
  or N + N with ``pairs``), accuracy/sensitivity/specificity at the threshold, ROC AUC, the slope-1
  operating point and accuracy per age group;
* realistic protocol: every tissue patch of every test image at its natural prevalence, scored as the app
  scores it, plus false positives per image, image-level AUC and a region FROC curve.

Both carry seeded bootstrap confidence intervals that resample patients.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from plaid.errors import PlaidInputError
from plaid.evaluate.bootstrap import bootstrap_metrics
from plaid.evaluate.froc import FrocCurve, froc_curve
from plaid.evaluate.scoring import PatchTable, ScoredImage
from plaid.metrics import confusion_at, operating_point, safe_auc
from plaid.patches.sampling import BalancedSampler

logger = logging.getLogger(__name__)

# The slope-1 point of a protocol is found on the very patches it is then reported on: say so wherever it appears.
SLOPE1_CHOSEN_ON = "these test patches (chosen on the test films: optimistic)"
DEFAULT_AGE_GROUPS: tuple[tuple[float, float], ...] = ((31, 45), (46, 60), (61, 75))


def parse_age_groups(text: str) -> tuple[tuple[float, float], ...]:
    """'31-45,46-60,61-75' -> ((31, 45), (46, 60), (61, 75)); bounds are inclusive."""
    groups = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            bounds = (float(low), float(high))
        except ValueError:
            bounds = None
        if not sep or bounds is None or bounds[0] > bounds[1]:
            raise PlaidInputError(f"age group {part!r} is not of the form LOW-HIGH (e.g. 31-45)")
        groups.append(bounds)
    if not groups:
        raise PlaidInputError("no age group given")
    return tuple(groups)


def age_group_name(bounds: tuple[float, float]) -> str:
    """'31-45' for (31, 45)."""
    return f"{bounds[0]:g}-{bounds[1]:g}"


def paper_rows(table: PatchTable, seed: int, pairs: int | None = None) -> np.ndarray:
    """Rows of the balanced paper test set: all calcified patches + as many random tissue negatives (seeded).

    With ``pairs`` it is ``pairs`` random calcified patches and ``pairs`` random negatives, as the paper's
    100 + 100 (fewer, with a warning, when the test images do not have that many).
    """
    if pairs is None:
        return np.sort(BalancedSampler(table.index, seed=seed, negative_ratio=1.0).draw(0))
    rng = np.random.default_rng([seed, pairs])
    chosen = []
    for label in (1, 0):
        rows = np.flatnonzero(table.labels == label)
        if len(rows) < pairs:
            logger.warning("only %d %s patches available for %d paper pairs", len(rows),
                           "calcified" if label else "normal", pairs)
        chosen.append(rng.choice(rows, min(pairs, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def binary_summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts, AUC, metrics at ``threshold`` and at the slope-1 operating point of these patches."""
    labels = np.asarray(labels).astype(np.int64)
    positives = int(labels.sum())
    out: dict[str, Any] = {
        "patches": int(labels.size), "positives": positives, "negatives": int(labels.size - positives),
        "auc": safe_auc(labels, scores),
        "at_threshold": confusion_at(labels, scores, threshold).to_dict() if labels.size else None,
        "operating_point": None,
    }
    if 0 < positives < labels.size:
        point = operating_point(labels, scores)
        out["operating_point"] = {**asdict(point), **confusion_at(labels, scores, point.threshold).to_dict(),
                                  "chosen_on": SLOPE1_CHOSEN_ON}
    return out


def age_table(table: PatchTable, rows: np.ndarray, scores: np.ndarray, image_ids: np.ndarray, threshold: float,
              groups: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """Accuracy per age group over ``rows`` scored ``scores`` (the paper's Table 1).

    Bounds are inclusive; a last row gathers patches of unknown or other ages, so the patch counts add up
    to the number of rows.
    """
    ages = table.ages[rows]
    labels = table.labels[rows]
    correct = (np.asarray(scores) >= threshold) == (labels == 1)
    members = [(ages >= low) & (ages <= high) for low, high in groups]
    named = [(age_group_name(bounds), member) for bounds, member in zip(groups, members, strict=True)]
    rest = ~np.any(members, axis=0) if members else np.ones(len(rows), dtype=bool)
    if rest.any():
        named.append(("other/unknown", rest))
    out = []
    for name, member in named:
        count = int(member.sum())
        out.append({
            "age_group": name, "patches": count, "positives": int(labels[member].sum()),
            "negatives": int(count - labels[member].sum()), "correct": int(correct[member].sum()),
            "accuracy": float(correct[member].mean()) if count else float("nan"),
            "images": len(set(image_ids[rows][member])), "patients": len(set(table.groups[rows][member])),
        })
    return out


def _froc_summary(froc: FrocCurve, threshold: float) -> dict[str, Any]:
    sensitivity, fp_rate = froc.at_threshold(threshold)
    return {
        "regions": froc.regions, "images": froc.images,
        "at_threshold": {"sensitivity": sensitivity if froc.regions else None, "fp_per_image": fp_rate},
        "sensitivity_at_fp_per_image": froc.sensitivity_at_rates() if froc.regions else {},
        "curve": froc.points(),
    }


def paper_protocol(
    table: PatchTable, rows: np.ndarray, image_ids: np.ndarray, threshold: float, pairs: int | None,
    age_groups: Sequence[tuple[float, float]], resamples: int, seed: int, confidence: float,
) -> dict[str, Any]:
    """The paper's summary of the balanced ``rows``: metrics, accuracy per age group, bootstrap intervals."""
    labels, scores = table.labels[rows], table.probability[rows]
    summary = binary_summary(labels, scores, threshold)
    summary["pairs_requested"] = pairs
    summary["age_groups"] = age_table(table, rows, scores, image_ids, threshold, age_groups)
    summary["bootstrap"] = bootstrap_metrics(table.groups[rows], labels, scores, threshold, resamples, seed,
                                             confidence).to_dict()
    return summary


def realistic_protocol(
    images: Sequence[ScoredImage], table: PatchTable, threshold: float, resamples: int, seed: int, confidence: float,
) -> tuple[dict[str, Any], FrocCurve]:
    """Every tissue patch at natural prevalence: metrics, false positives per image, image level, FROC."""
    labels, scores = table.labels, table.app_scores
    summary = binary_summary(labels, scores, threshold)
    summary["prevalence"] = summary["positives"] / summary["patches"] if summary["patches"] else None
    summary["calcified_patches_outside_tissue"] = int(((labels == 1) & ~table.tissue).sum())
    at = summary["at_threshold"] or {"false_positives": 0}
    summary["false_positive_patches_per_image"] = at["false_positives"] / len(images)
    image_labels = np.array([image.image_label for image in images], dtype=np.int64)
    image_scores = np.array([image.image_score for image in images])
    summary["image_level"] = {
        "images": len(images), "calcified_images": int(image_labels.sum()),
        "auc": safe_auc(image_labels, image_scores),
        "at_threshold": confusion_at(image_labels, image_scores, threshold).to_dict(),
    }
    froc = froc_curve(np.concatenate([image.regions for image in images]),
                      scores[(labels == 0) & table.tissue], len(images))
    summary["froc"] = _froc_summary(froc, threshold)
    summary["bootstrap"] = bootstrap_metrics(table.groups, labels, scores, threshold, resamples, seed,
                                             confidence).to_dict()
    return summary, froc

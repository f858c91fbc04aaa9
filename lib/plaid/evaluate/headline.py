"""The figures every report leads with: region sensitivity at a few false patches per film, the image AUC, and
what the stored threshold does on the test films, each with a bootstrap interval that resamples patients.

A film is reduced to what these figures need (`FilmScores`): the best score of each calcified region, the
scores of its normal tissue patches, its image-level truth and score. The FROC rates are the radiologist's
yardstick (false marks per film), so they come before the patch-level paper protocol in every report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plaid.evaluate.froc import froc_curve
from plaid.metrics import safe_auc

HEADLINE_FP_RATES = (0.25, 0.5, 1.0, 2.0)
# Checkpoint keys that describe how its threshold was chosen (shown beside the threshold when present).
OPERATING_POINT_KEYS = ("operating_point", "max_false_marks_per_image", "validation_false_marks_per_image",
                        "operating_point_films", "operating_point_normal_films", "operating_point_films_source",
                        "operating_point_warning")
THRESHOLD_FIGURES = ("false_marks_per_film", "region_sensitivity", "calcified_films_marked", "normal_films_marked")


@dataclass(frozen=True)
class FilmScores:
    """One scored film: its patient, best score per calcified region, scores of its normal tissue patches,
    image-level truth and score. ``located`` is False for a film whose calcifications are known only at image
    level (no mask): it counts for the image AUC but not for the FROC, which needs to know which patches are
    normal."""

    patient: str
    regions: np.ndarray
    negatives: np.ndarray
    calcified: bool
    score: float
    located: bool = True


def rate_key(rate: float) -> str:
    """'0.25', '1', '2': the JSON key of a false-patches-per-film rate (as `FrocCurve.sensitivity_at_rates`)."""
    return f"{rate:g}"


def froc_sensitivities(films: Sequence[FilmScores], rates: Sequence[float] = HEADLINE_FP_RATES) -> dict[str, float]:
    """Best region sensitivity with at most each rate of false patches per located film (NaN without regions)."""
    located = [film for film in films if film.located]
    regions = np.concatenate([film.regions for film in located]) if located else np.zeros(0)
    if regions.size == 0:
        return {rate_key(rate): float("nan") for rate in rates}
    negatives = np.concatenate([film.negatives for film in located])
    return froc_curve(regions, negatives, len(located)).sensitivity_at_rates(tuple(rates))


def image_auc(films: Sequence[FilmScores]) -> float:
    """ROC AUC of calcified versus normal films scored by their image score (NaN with one class only)."""
    return safe_auc(np.array([film.calcified for film in films], dtype=np.int64),
                    np.array([film.score for film in films], dtype=np.float64))


def at_threshold(films: Sequence[FilmScores], threshold: float) -> dict[str, float]:
    """What ``threshold`` does on these films: false patches per located film, the share of calcified regions
    touched by a marked patch, and the share of calcified and of normal films with any mark."""
    located = [film for film in films if film.located]
    regions = np.concatenate([film.regions for film in located]) if located else np.zeros(0)
    false_marks = sum(int((film.negatives >= threshold).sum()) for film in located)
    called = np.array([film.score >= threshold for film in films], dtype=bool)
    truth = np.array([film.calcified for film in films], dtype=bool)
    values = (false_marks / len(located) if located else float("nan"),
              float(np.mean(regions >= threshold)) if regions.size else float("nan"),
              float(called[truth].mean()) if truth.any() else float("nan"),
              float(called[~truth].mean()) if (~truth).any() else float("nan"))
    return dict(zip(THRESHOLD_FIGURES, values, strict=True))


def _interval(values: list[float], confidence: float) -> list[float | None]:
    finite = np.asarray([value for value in values if np.isfinite(value)], dtype=np.float64)
    if finite.size == 0:
        return [None, None]
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_by_patient(films: Sequence[FilmScores], statistic: Callable[[Sequence[FilmScores]], dict[str, float]],
                         iterations: int, seed: int, confidence: float) -> dict[str, dict[str, Any]]:
    """Percentile intervals of each value ``statistic`` returns, over ``iterations`` resamples of the patients
    with replacement (every film of a drawn patient, a patient drawn twice counting twice). A value undefined
    in a resample (NaN: no region, one class only) is left out of that value's interval; the count of the
    resamples that did count is reported beside it."""
    patients = sorted({film.patient for film in films})
    films_of = {patient: [film for film in films if film.patient == patient] for patient in patients}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(max(0, int(iterations))):
        drawn = rng.integers(0, len(patients), len(patients)) if patients else []
        sample = [film for number in drawn for film in films_of[patients[number]]]
        for key, value in statistic(sample).items():
            draws.setdefault(key, []).append(value)
    return {key: {"interval": _interval(values, confidence), "resamples": int(np.isfinite(values).sum())}
            for key, values in draws.items()}


def headline_figures(films: Sequence[FilmScores], threshold: float | None, iterations: int = 1000, seed: int = 0,
                     confidence: float = 0.95, rates: Sequence[float] = HEADLINE_FP_RATES) -> dict[str, Any]:
    """FROC region sensitivity at ``rates`` false patches per film, the image AUC and the figures at
    ``threshold`` (left out when None: films scored by models with different thresholds), each with its
    bootstrap interval by patient (JSON-ready)."""

    def statistic(sample: Sequence[FilmScores]) -> dict[str, float]:
        figures = {f"froc_{key}": value for key, value in froc_sensitivities(sample, rates).items()}
        figures["image_auc"] = image_auc(sample)
        if threshold is not None:
            figures.update({f"threshold_{key}": value for key, value in at_threshold(sample, threshold).items()})
        return figures

    point = statistic(films)
    spread = bootstrap_by_patient(films, statistic, iterations, seed, confidence)

    def entry(key: str) -> dict[str, Any]:
        return {"value": point[key], **spread.get(key, {"interval": [None, None], "resamples": 0})}

    located = [film for film in films if film.located]
    figures = {
        "films": len(films),
        "located_films": len(located),
        "calcified_films": sum(film.calcified for film in films),
        "regions": int(sum(len(film.regions) for film in located)),
        "patients": len({film.patient for film in films}),
        "bootstrap": {"unit": "patient", "iterations": int(iterations), "confidence": confidence, "seed": seed},
        "froc": [{"fp_per_film": rate, **entry(f"froc_{rate_key(rate)}")} for rate in rates],
        "image_auc": entry("image_auc"),
    }
    if threshold is not None:
        figures["at_threshold"] = {"threshold": float(threshold),
                                   **{key: entry(f"threshold_{key}") for key in THRESHOLD_FIGURES}}
    return figures


def stored_operating_point(meta: Mapping[str, Any]) -> dict[str, Any]:
    """How a checkpoint says its threshold was chosen: its `OPERATING_POINT_KEYS` and ``validation`` note, when
    present (older checkpoints store only the slope-1 threshold)."""
    out = {key: meta[key] for key in OPERATING_POINT_KEYS if meta.get(key) is not None}
    if meta.get("validation") is not None:
        out["validation"] = meta["validation"]
    return out

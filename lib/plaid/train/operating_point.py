"""The decision threshold a trained model is served with, chosen on whole validation films.

``false_marks`` (the default) scores every tissue patch of the validation films exactly as the predictor
serves them (`plaid.infer.predictor.PatchPredictor`, flips averaged when the model was trained with
``tta_flips``) and takes the lowest threshold at which the normal patches marked average at most
``max_false_marks_per_image`` per film. It needs only films without calcification. ``slope1`` keeps the
paper's point on the balanced validation patches, chosen during training.

Every record names the films that chose the threshold (``threshold_films``: image and patient ids), so that
`plaid evaluate` and `plaid ensemble` can refuse to report on them, and carries a warning
(``operating_point_warning``, also logged) when fewer than ``min_normal_films`` films without calcification chose
it, or when none did and the slope-1 threshold was kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.metrics import false_marks_threshold
from plaid.model.backends import TORCH_FP32
from plaid.model.checkpoint import read_checkpoint, write_payload
from plaid.patches.prepared import PreparedImage

logger = logging.getLogger(__name__)

FALSE_MARKS = "false_marks"
SLOPE1 = "slope1"
OPERATING_POINTS = (FALSE_MARKS, SLOPE1)
DEFAULT_MIN_NORMAL_FILMS = 10


@dataclass
class FilmScores:
    """The served probabilities of one film's tissue patches and whether each covers a calcification."""

    probabilities: np.ndarray
    calcified: np.ndarray


def score_films(checkpoint: str | Path, films: Sequence[PreparedImage], device: str = "auto") -> list[FilmScores]:
    """Every tissue patch of each film scored by the predictor the app and the CLI serve ``checkpoint`` with
    (torch fp32, the reference every faster runtime must agree with)."""
    predictor = PatchPredictor(checkpoint, InferConfig(device=device, runtime=TORCH_FP32))
    scored = []
    for film in films:
        prediction = predictor.predict_prepared(film)
        tissue = prediction.scored
        calcified = film.labels[tissue] if film.labels is not None else np.zeros(int(tissue.sum()), dtype=bool)
        scored.append(FilmScores(prediction.probabilities[tissue], calcified.astype(bool)))
    return scored


def false_marks_per_film(films: Sequence[FilmScores], threshold: float) -> float:
    """Normal patches at or above ``threshold``, averaged over the films (NaN without films)."""
    if not films:
        return float("nan")
    marks = sum(int(np.sum(film.probabilities[~film.calcified] >= threshold)) for film in films)
    return marks / len(films)


def film_entries(records: Sequence[CaseRecord | None]) -> list[dict[str, Any]]:
    """The image and patient id of each film (the ``threshold_films`` a checkpoint stores)."""
    return [{"image_id": record.image_id, "patient_id": record.patient_id} for record in records if record is not None]


def operating_point_warning(normal_films: int, min_normal_films: int, chosen: str) -> str | None:
    """Why the threshold may not hold on new films, in words (None when enough normal films chose it)."""
    if chosen != FALSE_MARKS:
        return (None if normal_films else
                "no film without calcification to choose a false-marks threshold on: the slope-1 threshold is kept")
    if normal_films < min_normal_films:
        return (f"the threshold was chosen on {normal_films} films without calcification, fewer than "
                f"{min_normal_films}: one false patch more or less there moves it, so expect other false-mark rates "
                "on new films (hold out more normal women: operating_point_normal_women)")
    return None


def operating_point_record(films: Sequence[FilmScores], operating_point: str, max_per_film: float,
                           slope1_threshold: float, source: str, chosen_on: Sequence[dict[str, Any]] = (),
                           min_normal_films: int = DEFAULT_MIN_NORMAL_FILMS) -> dict[str, Any]:
    """The checkpoint keys of the chosen operating point: the threshold, how it was chosen, the films it was chosen
    on (``chosen_on``, their ids), the false marks per film it gives there and a warning when too few of them
    were normal."""
    threshold, chosen = slope1_threshold, SLOPE1
    normal = np.concatenate([film.probabilities[~film.calcified] for film in films] or [np.zeros(0)])
    if operating_point == FALSE_MARKS and normal.size:
        threshold, chosen = false_marks_threshold(normal, len(films), max_per_film), FALSE_MARKS
    calcified = np.concatenate([film.probabilities[film.calcified] for film in films] or [np.zeros(0)])
    normal_films = sum(1 for film in films if not film.calcified.any())
    warning = None
    if operating_point == FALSE_MARKS:
        warning = operating_point_warning(normal_films, min_normal_films, chosen)
    if warning:
        logger.warning("operating point: %s", warning)
    return {
        "threshold": threshold,
        "slope1_threshold": slope1_threshold,
        "operating_point": chosen,
        "max_false_marks_per_image": max_per_film,
        "validation_false_marks_per_image": false_marks_per_film(films, threshold),
        "validation_patch_sensitivity": float(np.mean(calcified >= threshold)) if len(calcified) else float("nan"),
        "operating_point_films": len(films),
        "operating_point_normal_films": normal_films,
        "operating_point_films_source": source,
        "operating_point_warning": warning,
        "threshold_films": [dict(entry) for entry in chosen_on],
    }


def set_operating_point(checkpoint: str | Path, films: Sequence[PreparedImage], operating_point: str,
                        max_per_film: float, source: str, device: str = "auto",
                        min_normal_films: int = DEFAULT_MIN_NORMAL_FILMS) -> dict[str, Any]:
    """Score ``films`` with the checkpoint (one model or an ensemble) as served, store the chosen operating
    point in it and return it.

    The threshold the checkpoint already holds (the slope-1 point of its best epoch) is kept with
    ``slope1``, or when there is no film to choose on.
    """
    payload = read_checkpoint(checkpoint)
    scores = score_films(checkpoint, films, device) if films else []
    slope1 = float(payload.get("slope1_threshold", payload.get("threshold", 0.5)))
    record = operating_point_record(scores, operating_point, max_per_film, slope1, source,
                                    film_entries([film.record for film in films]),
                                    min_normal_films)
    if math.isfinite(record["threshold"]):
        write_payload(checkpoint, {**payload, **record})
    logger.info("operating point %s: threshold %.4f gives %.2f false marks per film on %d %s films",
                record["operating_point"], record["threshold"], record["validation_false_marks_per_image"],
                len(films), source)
    return record


def choose_operating_point(best_path: Path, validation_films: Sequence[PreparedImage],
                           training_films: Sequence[PreparedImage], operating_point: str, max_per_film: float,
                           device: str = "auto", min_normal_films: int = DEFAULT_MIN_NORMAL_FILMS) -> dict[str, Any]:
    """Store a training run's operating point in its best checkpoint, chosen on the validation films; on the
    training films, with a warning, when no film was held out."""
    films, source = validation_films, "validation"
    if not films:
        logger.warning("no validation film was held out: the operating point is chosen on the training films "
                       "(optimistic; set val_fraction or operating_point_normal_women)")
        films, source = training_films, "training"
    return set_operating_point(best_path, films, operating_point, max_per_film, source, device=device,
                               min_normal_films=min_normal_films)

"""Active-learning strategies: how much a film is worth annotating next, and which films to pick.

Every strategy except ``random`` ranks films by one number computed from the current model's patch
probabilities on the film's tissue patches (`film_values`); the films with the highest numbers are picked
first. The MONAI Label app stores these numbers in each image's info when it scores the datastore, and its
strategies and `plaid simulate-al` both pick with `pick_films`, so the simulation measures exactly what
the app does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from plaid.infer.uncertainty import binary_entropy, total_patch_entropy

logger = logging.getLogger(__name__)

RANDOM = "random"
MIXED = "mixed"
MIXED_BASE = "film_score"  # the ranked strategy a `mixed` pick falls back on when it is not a random one
MIXED_RANDOM_SHARE = 0.5
VALUES_KEY = "plaid_al_values"  # image info: {ranked strategy: value} under the model named by MODEL_KEY
MODEL_KEY = "plaid_al_model"

FilmValue = Callable[[np.ndarray, float], float]


def patch_entropy(probabilities: np.ndarray, threshold: float) -> float:
    """Sum of patch entropies in bits (`total_patch_entropy`): roughly the number of patches the model cannot
    decide, so it grows with the breast's size."""
    return total_patch_entropy(probabilities)


def film_score(probabilities: np.ndarray, threshold: float) -> float:
    """The film's score, its highest patch probability: the film most likely to hold a calcification first."""
    return float(np.max(probabilities)) if len(probabilities) else 0.0


def near_threshold(probabilities: np.ndarray, threshold: float) -> float:
    """1 minus the distance of the film's highest patch from the operating point: the film whose mark is the
    closest call first."""
    return 1.0 - abs(film_score(probabilities, threshold) - threshold) if len(probabilities) else 0.0


def expected_false_marks(probabilities: np.ndarray, threshold: float) -> float:
    """The expected number of false marks on the film: over its patches marked at the operating point, the sum
    of the chance that each is not a calcification."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float((1.0 - p[p >= threshold]).sum())


def film_uncertainty(probabilities: np.ndarray, threshold: float) -> float:
    """Mean patch entropy in bits: per-film uncertainty that does not grow with the breast's size."""
    return float(binary_entropy(probabilities).mean()) if len(probabilities) else 0.0


RANKED: dict[str, FilmValue] = {
    "patch_uncertainty": patch_entropy,
    "film_score": film_score,
    "near_threshold": near_threshold,
    "false_marks": expected_false_marks,
    "film_uncertainty": film_uncertainty,
}
STRATEGIES: tuple[str, ...] = (RANDOM, *RANKED, MIXED)
DESCRIPTIONS: dict[str, str] = {
    RANDOM: "a random unlabelled film",
    "patch_uncertainty": "the film with the highest total patch entropy (grows with breast size)",
    "film_score": "the film the model finds most likely calcified (highest patch probability)",
    "near_threshold": "the film whose highest patch lies nearest the operating point",
    "false_marks": "the film with the most expected false marks at the operating point",
    "film_uncertainty": "the film with the highest mean patch entropy",
    MIXED: f"half the picks at random, half by {MIXED_BASE}",
}


def check_strategy(name: str) -> str:
    """``name`` when it is a known strategy, else `ValueError` listing them."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown active-learning strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return name


def value_name(strategy: str) -> str | None:
    """The ranked value a strategy reads (`mixed` reads its base's; None for `random`)."""
    check_strategy(strategy)
    if strategy == RANDOM:
        return None
    return MIXED_BASE if strategy == MIXED else strategy


def film_values(probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Every ranked strategy's value of one film from its tissue-patch probabilities and the threshold."""
    p = np.asarray(probabilities, dtype=np.float64)
    return {name: value(p, float(threshold)) for name, value in RANKED.items()}


def pick_films(strategy: str, candidates: Sequence[str], values: Mapping[str, float | None], count: int,
               rng: np.random.Generator) -> list[str]:
    """The ``count`` films of ``candidates`` the strategy picks, in order.

    Ranked strategies take the highest ``values`` (films without a value come last, ties by id); `random`
    draws with ``rng``; `mixed` draws each pick at random with probability `MIXED_RANDOM_SHARE`, else takes
    the best-ranked film left.
    """
    check_strategy(strategy)
    left = sorted(candidates)
    ranked = sorted(left, key=lambda film: (-_finite(values.get(film)), film))
    picked: list[str] = []
    for _ in range(min(max(0, int(count)), len(left))):
        at_random = strategy == RANDOM or (strategy == MIXED and rng.random() < MIXED_RANDOM_SHARE)
        film = left[int(rng.integers(len(left)))] if at_random else ranked[0]
        picked.append(film)
        left.remove(film)
        ranked.remove(film)
    logger.debug("%s picked %s", strategy, picked)
    return picked


def _finite(value: float | None) -> float:
    """A stored value for ranking: a missing or non-finite one ranks last."""
    return float(value) if value is not None and np.isfinite(value) else float("-inf")

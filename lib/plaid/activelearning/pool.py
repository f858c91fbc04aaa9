"""The films of a simulated annotation loop: the held-out test women, and a pool whose masks stay hidden
until a strategy picks the film; also how the current model scores a pool film (as the app's scoring does).

`HiddenPool` is the only way the simulation reaches a pool film's mask or truth: `unlabelled` hands out
image paths alone, and `labelled_records` gives the mask (and the metadata's calcified flag) of revealed
films only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from plaid.activelearning.strategies import film_values
from plaid.infer.predictor import PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask
from plaid.patches.prepared import PreparedImage
from plaid.train.splits import split_by_group

logger = logging.getLogger(__name__)


class HiddenPool:
    """Films with known masks, each revealed (mask, calcified flag) only once a strategy picked it."""

    def __init__(self, records: Sequence[CaseRecord]) -> None:
        self._records = {record.image_id: record for record in records}
        self._revealed: list[str] = []
        self._truth: dict[str, bool] = {}

    def unlabelled(self) -> dict[str, str]:
        """Image id -> image path of every film not revealed yet (no mask, no truth)."""
        return {image_id: record.image for image_id, record in self._records.items() if image_id not in self._truth}

    def group_of(self, image_id: str) -> str:
        """The film's woman (patient id, else the film itself): known before annotation, as on any film."""
        return self._records[image_id].group

    def films_of(self, groups: Iterable[str]) -> list[str]:
        """Ids of every pool film of these women, sorted."""
        wanted = set(groups)
        return sorted(image_id for image_id, record in self._records.items() if record.group in wanted)

    def reveal(self, image_ids: Iterable[str]) -> None:
        """Annotate these films: their masks (and calcified flags) become readable."""
        for image_id in image_ids:
            if image_id in self._truth:
                continue
            record = self._records[image_id]
            known = record.calcified
            if known is None:
                known = bool(record.label and np.any(read_label_mask(record.label)))
            self._truth[image_id] = bool(known)
            self._revealed.append(image_id)

    @property
    def revealed(self) -> list[str]:
        """Revealed film ids in the order they were revealed."""
        return list(self._revealed)

    def labelled_records(self) -> list[CaseRecord]:
        """Copies of the revealed films' records, with their masks: what the train task reads."""
        return [replace(self._records[image_id]) for image_id in self._revealed]

    def calcified_labelled(self) -> int:
        """How many revealed films hold a calcification."""
        return sum(self._truth.values())


def split_test_women(records: Sequence[CaseRecord], fraction: float,
                     seed: int = 0) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """(pool, test): ``fraction`` of the women held out for testing, never picked. Women whose metadata says
    calcified are dealt out first so both parts get some (the split reads no mask)."""
    calcified = {record.group for record in records if record.calcified}
    return split_by_group(records, fraction, seed, positive_groups=calcified or None)


def initial_films(pool: HiddenPool, women: int, seed: int) -> list[str]:
    """The films of ``women`` women drawn at random with ``seed``: the labels the loop starts from."""
    groups = sorted({pool.group_of(image_id) for image_id in pool.unlabelled()})
    drawn = np.random.default_rng(seed).choice(groups, size=min(women, len(groups)), replace=False)
    return pool.films_of(drawn.tolist())


def prepare_film(predictor: PatchPredictor, path: str) -> PreparedImage:
    """Read an unlabelled film and prepare it as the predictor scores it."""
    image = read_mammogram(path, min_size=predictor.patch_settings().patch_size)
    return predictor.prepare(image.pixels, image.meta)


def score_film(predictor: PatchPredictor, image: PreparedImage) -> dict[str, float]:
    """Every ranked strategy's value of a prepared film under the predictor's model and threshold."""
    prediction = predictor.predict_prepared(image)
    return film_values(prediction.probabilities[prediction.scored], prediction.threshold)

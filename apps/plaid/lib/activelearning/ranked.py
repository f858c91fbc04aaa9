"""The app's ranked strategies: the unlabeled image a `plaid.activelearning` strategy picks from stored values."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.datastore.stored_info import stored_values
from plaid.activelearning.strategies import DESCRIPTIONS, pick_films, value_name

logger = logging.getLogger(__name__)

# The strategy the app hands out by default, and why (docs/active-learning.md has the learning curve).
DEFAULT_STRATEGY = "film_score"
DEFAULT_REASON = ("film_score: the unlabeled film the model finds most likely calcified. In the mini-MIAS learning "
                  "curve (3 seeds, docs/active-learning.md) no strategy beat random selection beyond seed noise "
                  "(image AUC at 48 films 0.62 against 0.68, seeds spanning 0.56-0.77), but film_score labelled "
                  "6 of the 9 calcified pool films in every seed against 2-5 for random; patch_uncertainty "
                  "did no better than random and was removed")


class RankedStrategy(Strategy):
    """Picks with `plaid.activelearning.strategies.pick_films` (the function `plaid simulate-al` measures) over
    the values the `active_learning` scoring method stored; unscored images rank last."""

    def __init__(self, name: str) -> None:
        super().__init__(DESCRIPTIONS[name][:1].upper() + DESCRIPTIONS[name][1:])
        self.name = name
        self.value = value_name(name)

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Pick the next image to annotate ({} when every image is labelled)."""
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return {}
        values = {}
        for image_id in images:
            stored = stored_values(datastore.get_image_info(image_id), f"image {image_id}")
            values[image_id] = stored.get(self.value) if self.value else None
        chosen = pick_films(self.name, images, values, 1, np.random.default_rng())[0]
        logger.info("%s: %s (value %s) of %d unlabeled", self.name, chosen, values[chosen], len(images))
        return {"id": chosen, "value": values[chosen]}

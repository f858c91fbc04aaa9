"""MONAI Label's `random` strategy, safe when every candidate was handed out within the current second."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.datastore.stored_info import handed_out_at

logger = logging.getLogger(__name__)


class RecencyWeightedRandom(Strategy):
    """A random unlabeled image, weighted by the seconds since this strategy last returned it.

    Same rule as MONAI Label's `Random`, except that every weight is at least one second, so images all
    handed out just now can still be chosen (MONAI Label's version raises when every weight is zero).
    """

    def __init__(self) -> None:
        super().__init__("Random unlabeled image, favouring those not handed out recently")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """Pick the next image to annotate (None when every image is labelled)."""
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy = request.get("strategy") or "random"
        now = int(time.time())
        weights = []
        for image_id in images:
            last = handed_out_at(datastore.get_image_info(image_id), strategy, f"image {image_id}")
            weights.append(max(1, now - int(last)))
        chosen = random.choices(range(len(images)), weights=weights)[0]
        logger.info("random: %s (weight %d of %d images)", images[chosen], weights[chosen], len(images))
        return {"id": images[chosen], "weight": weights[chosen]}

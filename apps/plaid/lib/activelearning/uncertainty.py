"""Uncertainty sampling: the unlabeled image whose patch predictions the model is least sure about."""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.stored_info import stored_uncertainty
from plaid.infer.uncertainty import SCORE_KEY

logger = logging.getLogger(__name__)


class PatchUncertaintyStrategy(Strategy):
    """Returns the unlabeled image with the highest stored patch-entropy score (see `plaid.infer.uncertainty`).

    Scores come from the `patch_uncertainty` scoring method; unscored images rank after scored ones.
    """

    def __init__(self) -> None:
        super().__init__("Unlabeled image with the most uncertain patch predictions (total patch entropy)")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Pick the next image to annotate."""
        images = datastore.get_unlabeled_images()
        if not images:
            return {}
        scored = []
        for image_id in images:
            value = stored_uncertainty(datastore.get_image_info(image_id), f"image {image_id}")
            scored.append((value if value is not None else float("-inf"), image_id))
        scored.sort(key=lambda item: (-item[0], item[1]))
        best_score, best_id = scored[0]
        logger.info("patch_uncertainty: %s (score %s) of %d unlabeled", best_id, best_score, len(images))
        return {"id": best_id, SCORE_KEY: best_score if best_score != float("-inf") else None}

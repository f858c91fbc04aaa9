"""Scoring method: run the model on unlabeled images and store each ranked strategy's value in their info."""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from plaid.activelearning.pool import prepare_film, score_film
from plaid.activelearning.strategies import MODEL_KEY, VALUES_KEY
from plaid.errors import PlaidError
from plaid.infer.predictor import PatchPredictor
from plaid.patches.prefetch import prefetched
from plaid.patches.prepared import PreparedImage

logger = logging.getLogger(__name__)


class FilmValueScoring(ScoringMethod):
    """Writes ``plaid_al_values`` ({strategy: value}, `plaid.activelearning.strategies.film_values`) per image,
    scored exactly as `plaid simulate-al` scores its unlabelled films."""

    def __init__(self, predictor: PatchPredictor) -> None:
        super().__init__("Active-learning values of every unlabeled image under the current model")
        self.predictor = predictor

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Score unlabeled images not yet scored by the current model; returns counts."""
        if not self.predictor.checkpoint.is_file():
            logger.info("active-learning scoring skipped: no trained model yet")
            return {"scored": 0, "skipped": 0, "reason": "no trained model"}
        self.predictor.model()  # load first: the checkpoint decides the patch size used below
        stamp = str(self.predictor.checkpoint.stat().st_mtime_ns)
        skipped, todo = 0, []
        for image_id in datastore.get_unlabeled_images():
            info = datastore.get_image_info(image_id) or {}
            if info.get(MODEL_KEY) == stamp and not request.get("force"):
                skipped += 1
            else:
                todo.append(image_id)
        scored, failed = 0, []
        for image_id, ready in prefetched(todo, lambda image_id: self._prepare(datastore, image_id)):
            try:
                values = score_film(self.predictor, ready.result())
            except PlaidError as exc:
                logger.warning("cannot score %s: %s", image_id, exc)
                failed.append(image_id)
                continue
            try:
                datastore.update_image_info(image_id, {VALUES_KEY: values, MODEL_KEY: stamp})
            except PlaidError as exc:  # e.g. a non-finite score from a broken model: not stored, not fatal
                logger.warning("cannot store the values of %s: %s", image_id, exc)
                failed.append(image_id)
                continue
            scored += 1
        logger.info("active-learning values: scored %d, unchanged %d, failed %d", scored, skipped, len(failed))
        return {"scored": scored, "skipped": skipped, "failed": failed}

    def _prepare(self, datastore: Datastore, image_id: str) -> PreparedImage:
        """Read and prepare one image (runs ahead of the model in a background thread)."""
        return prepare_film(self.predictor, datastore.get_image_uri(image_id))

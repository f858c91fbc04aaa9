"""Scoring test images: one predictor pass per prepared image, the per-patch table both protocols read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plaid.evaluate.froc import region_scores
from plaid.infer.predictor import PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.patches.grid import PatchGrid
from plaid.patches.prepared import PreparedImage, Problem, prepare_image, process_records
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM
from plaid.patches.sampling import PatchIndex


@dataclass
class ScoredImage:
    """One test image after the predictor ran: per-patch probabilities, tissue, labels and region scores."""

    record: CaseRecord
    grid: PatchGrid
    probabilities: np.ndarray
    tissue: np.ndarray
    labels: np.ndarray
    regions: np.ndarray
    threshold: float
    located: bool = True

    @property
    def app_scores(self) -> np.ndarray:
        """What the app outputs per patch: the probability on tissue patches, 0 where it does not score."""
        return np.where(self.tissue, self.probabilities, 0.0)

    @property
    def image_label(self) -> bool:
        """Image-level truth: the metadata's ``calcified`` when known, else whether the mask marks anything."""
        return image_truth(self.record, self.labels)

    @property
    def image_score(self) -> float:
        """Image-level score: the highest tissue-patch probability."""
        return float(self.probabilities[self.tissue].max()) if self.tissue.any() else 0.0

    @property
    def predicted(self) -> np.ndarray:
        """Boolean per patch: marked positive by the app at the threshold."""
        return self.tissue & (self.probabilities >= self.threshold)

    def summary(self) -> dict[str, Any]:
        """Per-image line of the report."""
        negatives = self.tissue & ~self.labels
        return {
            "image_id": self.record.image_id,
            "patient_id": self.record.patient_id,
            "age": self.record.age,
            "calcified": self.image_label,
            "image_score": round(self.image_score, 6),
            "patches_tissue": int(self.tissue.sum()),
            "patches_predicted": int(self.predicted.sum()),
            "located": self.located,
            # a film calcified only at image level has no patch labels: nothing to count as hit or false mark
            "patches_calcified": int(self.labels.sum()) if self.located else None,
            "false_positive_patches": int((self.predicted & negatives).sum()) if self.located else None,
            "regions": len(self.regions) if self.located else None,
            "regions_detected": int((self.regions >= self.threshold).sum()) if self.located else None,
        }


def image_truth(record: CaseRecord, labels: np.ndarray | None) -> bool:
    """Whether a film is calcified: its record's image-level ``calcified`` when known (films calcified only at
    image level have no mask), else whether any of its patches is labelled calcified."""
    if record.calcified is not None:
        return bool(record.calcified)
    return bool(labels is not None and labels.any())


def score_image(image: PreparedImage, predictor: PatchPredictor,
                cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM) -> ScoredImage:
    """Run the predictor on a labelled prepared image (prepared with ``keep_mask``) and score its regions
    (clusters of marks at most ``cluster_gap_mm`` apart, `plaid.patches.regions`).

    Calcified patches outside the tissue mask (which the app never scores) are scored too, with the same
    predictor, so the paper protocol can include every calcified patch. A film without a mask whose record
    says it is calcified (image-level truth only) is scored with ``located`` False: no patch label, no region.
    """
    if image.record is None:
        raise ValueError("score_image needs an image prepared from a record")
    prediction = predictor.predict_prepared(image)
    probabilities = prediction.probabilities.astype(np.float64)
    if image.labels is None or image.label_mask is None:
        return ScoredImage(record=image.record, grid=image.grid, probabilities=probabilities, tissue=prediction.scored,
                           labels=np.zeros(len(image.grid), dtype=bool), regions=np.zeros(0),
                           threshold=prediction.threshold, located=False)
    extra = np.flatnonzero(image.labels & ~prediction.scored)
    if extra.size:
        probabilities[extra] = predictor.score(image, extra)
    app_scores = np.where(prediction.scored, probabilities, 0.0)
    return ScoredImage(record=image.record, grid=image.grid, probabilities=probabilities, tissue=prediction.scored,
                       labels=image.labels,
                       regions=region_scores(image.label_mask, image.grid, app_scores, image.labels,
                                             image.spacing_mm_tiled, cluster_gap_mm),
                       threshold=prediction.threshold)


def score_records(
    records: Sequence[CaseRecord], predictor: PatchPredictor, on_error: str = "skip",
    progress: bool = True, keep: Callable[[PreparedImage, ScoredImage], None] | None = None,
    cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM,
) -> tuple[list[ScoredImage], list[Problem]]:
    """Score every record, preparing the next image while the model runs on the current one; bad ones are
    skipped with a warning (``on_error='skip'``) or stop the run. ``keep`` sees each prepared image beside
    its scores before the image is dropped (overlays draw on it instead of reading the file again). Images
    are prepared as the predictor tiles them."""
    settings = predictor.patch_settings()

    def work(image: PreparedImage) -> ScoredImage:
        scored = score_image(image, predictor, cluster_gap_mm)
        if keep is not None:
            keep(image, scored)
        return scored

    def prepare(record: CaseRecord) -> PreparedImage:
        located = bool(record.label) or record.calcified is None  # no mask and no image-level truth: an error
        return prepare_image(record, settings, with_label=located, keep_mask=located)

    return process_records(records, work, on_error=on_error, progress=progress, description="scoring test images",
                           prepare=prepare)


@dataclass
class PatchTable:
    """One row per tissue or calcified patch of every scored image (the rows of predictions.csv)."""

    index: PatchIndex
    probability: np.ndarray
    tissue: np.ndarray
    groups: np.ndarray
    ages: np.ndarray

    @classmethod
    def from_images(cls, images: Sequence[ScoredImage]) -> PatchTable:
        """Build the table; rows are ordered by image, then patch (the same rows `PatchIndex` lists)."""
        index = PatchIndex.from_images([image.labels for image in images], [image.tissue for image in images])
        owners = [images[i] for i in index.image]
        return cls(
            index=index,
            probability=np.array([o.probabilities[p] for o, p in zip(owners, index.patch, strict=True)],
                                 dtype=np.float64),
            tissue=np.array([bool(o.tissue[p]) for o, p in zip(owners, index.patch, strict=True)], dtype=bool),
            groups=np.array([o.record.group for o in owners], dtype=object),
            ages=np.array([np.nan if o.record.age is None else float(o.record.age) for o in owners]),
        )

    @property
    def labels(self) -> np.ndarray:
        """0/1 per row."""
        return self.index.label

    @property
    def app_scores(self) -> np.ndarray:
        """Realistic-protocol score per row: the probability on tissue patches, 0 on the others."""
        return np.where(self.tissue, self.probability, 0.0)

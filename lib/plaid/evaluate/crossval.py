"""k-fold cross-validation split by patient: train on k-1 folds, score the held-out women, repeat.

The summary leads with the FROC (region sensitivity at 0.25 / 0.5 / 1 / 2 false patches per film) and the
image-level AUC: per fold as mean ± sd, and pooled over every held-out film (each scored by the one fold model
that did not see its woman) with bootstrap intervals that resample patients (`plaid.evaluate.headline`).

Images are read and prepared once and reused by every fold. Each fold also reports the paper protocol (all
calcified patches plus as many random tissue patches), the realistic protocol (every tissue patch at
natural prevalence), the image-level AUC (calcified image or not, scored by its highest patch; images whose
calcifications are known only at image level count here), and false-positive patches per image at the
model's operating point. The summary gives each metric as mean and sample standard deviation across folds.

Beside the model's figures each fold reports a brightness baseline on the same patches and images: the paper
protocol and image-level AUC when a patch is scored by nothing but its mean intensity. On film, dense tissue
and calcified regions are both bright, so a model that does not beat this reference has learnt density, not
calcification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plaid.errors import PlaidInputError
from plaid.evaluate.froc import region_scores
from plaid.evaluate.headline import (
    HEADLINE_FP_RATES,
    FilmScores,
    at_threshold,
    froc_sensitivities,
    headline_figures,
    image_auc,
    rate_key,
)
from plaid.evaluate.scoring import image_truth
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.metrics import safe_auc
from plaid.patches.prepared import PreparedImage, Problem, prepare_image, process_records
from plaid.serialization import write_json
from plaid.train.checkpointing import BEST_CHECKPOINT, LAST_CHECKPOINT
from plaid.train.config import TrainConfig
from plaid.train.members import fit_prepared
from plaid.train.records import training_split

logger = logging.getLogger(__name__)

FROC_METRICS = tuple(f"region_sensitivity_at_{rate_key(rate)}_fp" for rate in HEADLINE_FP_RATES)
METRICS = (*FROC_METRICS, "image_auc", "fp_per_image", "region_sensitivity_at_threshold", "paper_auc",
           "realistic_auc", "patch_sensitivity")
BASELINE_METRICS = ("brightness_paper_auc", "brightness_image_auc")
SUMMARY_FILE = "crossval.json"


def patient_folds(records: Sequence[CaseRecord], folds: int, seed: int = 0,
                  positive_groups: set[str] | None = None) -> list[list[CaseRecord]]:
    """Split records into ``folds`` folds by patient; patients with calcifications are dealt out first so
    every fold gets its share of them. No patient is in two folds."""
    groups = sorted({record.group for record in records})
    if folds < 2 or folds > len(groups):
        raise PlaidInputError(f"folds must be between 2 and the number of patients ({len(groups)}), got {folds}")
    rng = np.random.default_rng(seed)
    positive = [g for g in groups if positive_groups and g in positive_groups]
    order = list(rng.permutation(positive)) + list(rng.permutation([g for g in groups if g not in set(positive)]))
    fold_of = {group: number % folds for number, group in enumerate(order)}
    return [[r for r in records if fold_of[r.group] == number] for number in range(folds)]


@dataclass
class ScoredFoldImage:
    """One held-out image: patch probabilities and mean intensities, tissue and calcified patches, image-level
    truth, the best score of each calcified region of its mask (none without a mask) and its patient."""

    image_id: str
    probabilities: np.ndarray
    tissue: np.ndarray
    labels: np.ndarray | None
    calcified: bool
    brightness: np.ndarray
    regions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    patient: str = ""

    def film(self) -> FilmScores:
        """What the FROC and image AUC need of this film (its patient defaults to its own id)."""
        located = self.labels is not None
        negatives = self.probabilities[self.tissue & ~self.labels] if located else np.zeros(0)
        return FilmScores(patient=self.patient or f"image:{self.image_id}", regions=self.regions,
                          negatives=negatives, calcified=self.calcified,
                          score=highest_tissue_value(self.probabilities, self.tissue), located=located)


def score_fold_images(predictor: PatchPredictor, images: Sequence[PreparedImage]) -> list[ScoredFoldImage]:
    """Score every tissue patch (and every calcified patch) of the held-out images, and note each one's mean
    intensity for the brightness baseline."""
    scored = []
    for image in images:
        wanted = image.tissue | (image.labels if image.labels is not None else False)
        probabilities = np.zeros(len(image.grid), dtype=np.float64)
        brightness = np.zeros(len(image.grid), dtype=np.float64)
        indices = np.flatnonzero(wanted)
        probabilities[indices] = predictor.score(image, indices)
        brightness[indices] = image.patches(indices).mean(axis=(1, 2))
        regions = np.zeros(0)
        if image.label_mask is not None:
            regions = region_scores(image.label_mask, image.grid, np.where(image.tissue, probabilities, 0.0),
                                    image.labels, image.spacing_mm_tiled)
        scored.append(ScoredFoldImage(image.record.image_id, probabilities, image.tissue, image.labels,
                                      image_truth(image.record, image.labels), brightness, regions, image.record.group))
    return scored


def test_images(images: Sequence[PreparedImage], normal_images: int | None, seed: int) -> list[PreparedImage]:
    """All calcified images plus ``normal_images`` random others (all of them when None)."""
    if normal_images is None:
        return list(images)
    normal = [number for number, image in enumerate(images) if not image_truth(image.record, image.labels)]
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(normal, min(normal_images, len(normal)), replace=False).tolist()) if normal else set()
    return [image for number, image in enumerate(images) if image_truth(image.record, image.labels) or number in keep]


def highest_tissue_value(values: np.ndarray, tissue: np.ndarray) -> float:
    """An image's score under a per-patch value: its highest tissue patch (0 when it has no tissue patch)."""
    return float(values[tissue].max()) if tissue.any() else 0.0


def film_results(images: Sequence[ScoredFoldImage], threshold: float) -> list[dict[str, Any]]:
    """One row per scored film, for finding which films a fold's image-level AUC rests on: its truth, image
    score (highest tissue patch), the grid index of that patch, and its calcified patches found and normal
    tissue patches marked at ``threshold``."""
    rows = []
    for image in images:
        above = image.probabilities >= threshold
        calcified = image.labels if image.labels is not None else np.zeros_like(image.tissue)
        rows.append({
            "image_id": image.image_id,
            "calcified": bool(image.calcified),
            "image_score": round(highest_tissue_value(image.probabilities, image.tissue), 4),
            "top_patch": int(np.flatnonzero(image.tissue)[np.argmax(image.probabilities[image.tissue])])
            if image.tissue.any() else None,
            "calcified_patches": int(calcified.sum()) if image.labels is not None else None,
            "calcified_patches_found": int((calcified & above).sum()) if image.labels is not None else None,
            "false_patches": int((image.tissue & above & ~calcified).sum()),
        })
    return rows


def pooled_patches(images: Sequence[ScoredFoldImage],
                   values_of: str = "probabilities") -> tuple[np.ndarray, np.ndarray]:
    """The patches the patch metrics rank, pooled over the images with a mask: every tissue patch and every
    calcified one, as (labels 0/1, values); ``values_of`` names the per-patch field (a calcified patch outside
    the tissue scores 0)."""
    located = [image for image in images if image.labels is not None]
    if not located:
        return np.zeros(0, dtype=int), np.zeros(0)
    labels = np.concatenate([image.labels[image.tissue | image.labels] for image in located]).astype(int)
    values = np.concatenate([np.where(image.tissue, getattr(image, values_of), 0.0)[image.tissue | image.labels]
                             for image in located])
    return labels, values


def paper_sample(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper protocol's balanced test set: indices of every calcified patch plus as many random others."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    return np.concatenate([positives, rng.choice(negatives, min(len(positives), len(negatives)), replace=False)])


def paper_auc_draws(images: Sequence[ScoredFoldImage], draws: int, seed: int) -> np.ndarray:
    """The paper-protocol AUC of ``draws`` independent balanced draws of negatives from the same patches: how
    far one draw can land from the realistic AUC they average to."""
    labels, scores = pooled_patches(images)
    rng = np.random.default_rng(seed)
    return np.array([safe_auc(labels[chosen], scores[chosen])
                     for chosen in (paper_sample(labels, rng) for _ in range(draws))])


def fold_metrics(images: Sequence[ScoredFoldImage], threshold: float, seed: int) -> dict[str, float]:
    """FROC region sensitivity at 0.25-2 false patches per film, image-level AUC, FP patches per image and
    region and patch sensitivity at ``threshold``, paper and realistic patch AUCs, and the brightness
    baseline's paper and image-level AUCs on the same patches and images.

    The paper protocol ranks one seeded draw of negatives against the calcified patches. Averaged over draws
    it equals the realistic AUC (each normal patch is equally likely to be drawn), so with few calcified
    patches the two differ by the luck of the draw."""
    def image_values(values_of: str) -> np.ndarray:
        return np.array([highest_tissue_value(getattr(image, values_of), image.tissue) for image in images])

    labels, scores = pooled_patches(images)
    brightness = pooled_patches(images, "brightness")[1]
    positives = np.flatnonzero(labels == 1)
    paper = paper_sample(labels, np.random.default_rng(seed))
    image_labels = np.array([image.calcified for image in images], dtype=int)
    films = [image.film() for image in images]
    froc = froc_sensitivities(films)
    marked = at_threshold(films, threshold)
    return {
        **{name: froc[rate_key(rate)] for name, rate in zip(FROC_METRICS, HEADLINE_FP_RATES, strict=True)},
        "region_sensitivity_at_threshold": marked["region_sensitivity"],
        "paper_auc": safe_auc(labels[paper], scores[paper]),
        "realistic_auc": safe_auc(labels, scores),
        "image_auc": image_auc(films),
        "fp_per_image": marked["false_marks_per_film"],
        "patch_sensitivity": float(np.mean(scores[positives] >= threshold)) if len(positives) else float("nan"),
        "brightness_paper_auc": safe_auc(labels[paper], brightness[paper]),
        "brightness_image_auc": safe_auc(image_labels, image_values("brightness")),
        "test_images": len(images),
        "test_calcified_patches": int(len(positives)),
        "test_calcified_images": int(image_labels.sum()),
    }


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation over the finite values (NaN folds, e.g. one class only, are left out)."""
    finite = np.array([v for v in values if np.isfinite(v)], dtype=np.float64)
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "folds": int(finite.size),
    }


@dataclass
class CrossvalResult:
    """Per-fold metrics and their summary."""

    folds: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    pooled: dict[str, Any] = field(default_factory=dict)


def prepare_case(record: CaseRecord, config: TrainConfig) -> PreparedImage:
    """A labelled image, or an image-level-only one (calcified, no mask) prepared without patch labels. The
    full-size mask is kept only where it marks a calcification (its regions are the FROC's)."""
    image = prepare_image(record, config.patch_settings, with_label=bool(record.label), keep_mask=bool(record.label))
    if image.labels is None or not image.labels.any():
        image.label_mask = None
    return image


def run_crossval(records: Sequence[CaseRecord], config: TrainConfig, out_dir: str | Path, folds: int = 5,
                 checkpoint: str = "best", progress: bool = True, only_folds: int | None = None,
                 score_batch_size: int = 128, normal_images: int | None = None,
                 pooled_bootstrap: int = 1000) -> CrossvalResult:
    """Train and score ``folds`` times, each time holding out one fold of patients; writes crossval.json.

    ``only_folds`` runs just the first N of the ``folds`` folds (a cheaper estimate while choosing settings).
    ``normal_images`` scores every held-out calcified image but only that many randomly chosen (seeded)
    held-out images without calcification, for machines where scoring every tissue patch is too slow; AUCs
    do not depend on prevalence, so this estimates the same figures with more variance (the FROC's false
    patches per film then count the chosen normal films only). ``pooled_bootstrap`` resamples of the patients
    give the intervals of the pooled FROC and image AUC.
    """
    out_dir = Path(out_dir)
    if checkpoint == "last" and config.ensemble_members > 1:
        raise PlaidInputError("an ensemble has no last checkpoint: score its best.pt (--checkpoint best)")
    usable = [r for r in records if r.label or r.calcified]
    if not usable:
        raise PlaidInputError("no image has a mask or an image-level calcification label")
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    prepared, problems = process_records(usable, lambda r: prepare_case(r, config), progress=progress,
                                         description="preparing images")
    positive_groups = {p.record.group for p in prepared if image_truth(p.record, p.labels)}
    by_id = {p.record.image_id: p for p in prepared}
    split = patient_folds([p.record for p in prepared], folds, config.seed, positive_groups)
    patches = config.patch_settings
    infer = InferConfig(patch_size=patches.patch_size, stride=patches.stride, batch_size=score_batch_size,
                        device=config.device, tta_flips=config.tta_flips)
    result = CrossvalResult(problems=problems)
    films: list[FilmScores] = []
    for number, held_out in enumerate(split[:only_folds]):
        fold_started = time.perf_counter()
        held = {r.image_id for r in held_out}
        trainable = [p.record for p in prepared if p.record.image_id not in held and p.labels is not None]
        train, val = training_split(trainable, config, positive_groups)
        fold_dir = out_dir / f"fold-{number + 1}"
        logger.info("fold %d/%d: %d training, %d validation, %d test images", number + 1, folds, len(train),
                    len(val), len(held_out))
        trained = fit_prepared(config, fold_dir, [by_id[r.image_id] for r in train], [by_id[r.image_id] for r in val],
                               progress=progress)
        path = fold_dir / (LAST_CHECKPOINT if checkpoint == "last" else BEST_CHECKPOINT)
        predictor = PatchPredictor(path, infer, checkpoint_settings=False)  # images are prepared already
        meta = predictor.model()[1]
        scored = score_fold_images(predictor, test_images([by_id[r.image_id] for r in held_out], normal_images,
                                                          config.seed + number))
        threshold = float(meta.get("threshold", 0.5))
        films += [image.film() for image in scored]
        metrics = fold_metrics(scored, threshold, seed=config.seed + number)
        metrics.update(fold=number + 1, patients=len({r.group for r in held_out}),
                       best_epoch=int(meta.get("epoch", 0)), epochs=len(trained.history),
                       films=film_results(scored, threshold),
                       seconds=round(time.perf_counter() - fold_started, 1),
                       test_patients=sorted({r.group for r in held_out}))
        logger.info("fold %d: %s", number + 1, {k: round(metrics[k], 4) for k in METRICS})
        result.folds.append(metrics)
    result.summary = {name: mean_sd([fold[name] for fold in result.folds]) for name in METRICS + BASELINE_METRICS}
    result.pooled = headline_figures(films, None, iterations=pooled_bootstrap, seed=config.seed)
    timing = {"wall_s": round(time.perf_counter() - started_wall, 1),
              "process_cpu_s": round(time.process_time() - started_cpu, 1),
              "torch_threads": torch.get_num_threads()}
    write_json(out_dir / SUMMARY_FILE, {"pooled": result.pooled, "summary": result.summary,
                                        "config": config.to_dict(), "folds_requested": folds,
                                        "folds_run": len(result.folds), "normal_images_per_fold": normal_images,
                                        "checkpoint": checkpoint, "timing": timing,
                                        "folds": result.folds, "problems": [asdict(p) for p in problems]})
    return result

"""Evaluate a trained checkpoint on held-out images and write the report folder.

Two protocols share one pass of the predictor over the test images (the same `PatchPredictor` the app's
infer task uses):

* paper protocol: a balanced patch set (every calcified patch plus as many random tissue patches, seeded;
  or N + N with ``paper_pairs``), accuracy/sensitivity/specificity at the threshold, ROC AUC, the slope-1
  operating point and accuracy per age group;
* realistic protocol: every tissue patch of every test image at its natural prevalence, scored as the app
  scores it, plus false positives per image, image-level AUC and a region FROC curve.

Both carry seeded bootstrap confidence intervals that resample patients.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plaid.errors import PlaidInputError
from plaid.evaluate.bootstrap import bootstrap_metrics
from plaid.evaluate.froc import FrocCurve, froc_curve, region_scores
from plaid.evaluate.metrics import confusion_at, operating_point, roc_curve, safe_auc
from plaid.evaluate.overlays import render_overlay
from plaid.evaluate.plots import plot_froc, plot_roc
from plaid.evaluate.report import render_markdown
from plaid.infer.predictor import PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.io.images import read_mammogram
from plaid.patches.grid import PatchGrid
from plaid.patches.prepared import PatchSettings, PreparedImage, Problem, prepare_image, process_records
from plaid.patches.sampling import BalancedSampler, PatchIndex
from plaid.patches.spacing import boxes_on_source
from plaid.serialization import write_json
from plaid.train.holdout import EvalSelection

logger = logging.getLogger(__name__)

DEFAULT_AGE_GROUPS: tuple[tuple[float, float], ...] = ((31, 45), (46, 60), (61, 75))
PREDICTION_COLUMNS = ("image_id", "patient_id", "age", "patch", "grid_row", "grid_col", "top", "left", "bottom",
                      "right", "tissue", "label", "probability", "paper_set")


@dataclass
class EvalConfig:
    """Evaluation knobs; ``threshold=None`` uses the checkpoint's validation operating point, as the app does."""

    threshold: float | None = None
    seed: int = 0
    paper_pairs: int | None = None
    bootstrap: int = 1000
    confidence: float = 0.95
    age_groups: tuple[tuple[float, float], ...] = DEFAULT_AGE_GROUPS
    overlays: int = 4
    on_error: str = "skip"
    progress: bool = True


def parse_age_groups(text: str) -> tuple[tuple[float, float], ...]:
    """'31-45,46-60,61-75' -> ((31, 45), (46, 60), (61, 75)); bounds are inclusive."""
    groups = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            bounds = (float(low), float(high))
        except ValueError:
            bounds = None
        if not sep or bounds is None or bounds[0] > bounds[1]:
            raise PlaidInputError(f"age group {part!r} is not of the form LOW-HIGH (e.g. 31-45)")
        groups.append(bounds)
    if not groups:
        raise PlaidInputError("no age group given")
    return tuple(groups)


def age_group_name(bounds: tuple[float, float]) -> str:
    """'31-45' for (31, 45)."""
    return f"{bounds[0]:g}-{bounds[1]:g}"


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

    @property
    def app_scores(self) -> np.ndarray:
        """What the app outputs per patch: the probability on tissue patches, 0 where it does not score."""
        return np.where(self.tissue, self.probabilities, 0.0)

    @property
    def image_label(self) -> bool:
        """True when the image has any annotated calcification."""
        return bool(self.labels.any())

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
            "patches_calcified": int(self.labels.sum()),
            "patches_predicted": int(self.predicted.sum()),
            "false_positive_patches": int((self.predicted & negatives).sum()),
            "regions": len(self.regions),
            "regions_detected": int((self.regions >= self.threshold).sum()),
        }


def score_image(image: PreparedImage, predictor: PatchPredictor) -> ScoredImage:
    """Run the predictor on a labelled prepared image (prepared with ``keep_mask``) and score its regions.

    Calcified patches outside the tissue mask (which the app never scores) are scored too, with the same
    predictor, so the paper protocol can include every calcified patch.
    """
    if image.labels is None or image.label_mask is None or image.record is None:
        raise ValueError("score_image needs an image prepared from a labelled record with keep_mask=True")
    prediction = predictor.predict_prepared(image)
    probabilities = prediction.probabilities.astype(np.float64)
    extra = np.flatnonzero(image.labels & ~prediction.scored)
    if extra.size:
        probabilities[extra] = predictor.score(image, extra)
    app_scores = np.where(prediction.scored, probabilities, 0.0)
    return ScoredImage(record=image.record, grid=image.grid, probabilities=probabilities, tissue=prediction.scored,
                       labels=image.labels, regions=region_scores(image.label_mask, image.grid, app_scores),
                       threshold=prediction.threshold)


def score_records(
    records: Sequence[CaseRecord], predictor: PatchPredictor, settings: PatchSettings, on_error: str = "skip",
    progress: bool = True,
) -> tuple[list[ScoredImage], list[Problem]]:
    """Score every record, preparing the next image while the model runs on the current one; bad ones are
    skipped with a warning (``on_error='skip'``) or stop the run."""
    return process_records(records, lambda image: score_image(image, predictor), on_error=on_error,
                           progress=progress, description="scoring test images",
                           prepare=lambda record: prepare_image(record, settings, keep_mask=True))


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


def paper_rows(table: PatchTable, seed: int, pairs: int | None = None) -> np.ndarray:
    """Rows of the balanced paper test set: all calcified patches + as many random tissue negatives (seeded).

    With ``pairs`` it is ``pairs`` random calcified patches and ``pairs`` random negatives, as the paper's
    100 + 100 (fewer, with a warning, when the test images do not have that many).
    """
    if pairs is None:
        return np.sort(BalancedSampler(table.index, seed=seed, negative_ratio=1.0).draw(0))
    rng = np.random.default_rng([seed, pairs])
    chosen = []
    for label in (1, 0):
        rows = np.flatnonzero(table.labels == label)
        if len(rows) < pairs:
            logger.warning("only %d %s patches available for %d paper pairs", len(rows),
                           "calcified" if label else "normal", pairs)
        chosen.append(rng.choice(rows, min(pairs, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def binary_summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts, AUC, metrics at ``threshold`` and at the slope-1 operating point of these patches."""
    labels = np.asarray(labels).astype(np.int64)
    positives = int(labels.sum())
    out: dict[str, Any] = {
        "patches": int(labels.size), "positives": positives, "negatives": int(labels.size - positives),
        "auc": safe_auc(labels, scores),
        "at_threshold": confusion_at(labels, scores, threshold).to_dict() if labels.size else None,
        "operating_point": None,
    }
    if 0 < positives < labels.size:
        point = operating_point(labels, scores)
        out["operating_point"] = {**asdict(point), **confusion_at(labels, scores, point.threshold).to_dict()}
    return out


def age_table(table: PatchTable, rows: np.ndarray, scores: np.ndarray, image_ids: np.ndarray, threshold: float,
              groups: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """Accuracy per age group over ``rows`` scored ``scores`` (the paper's Table 1).

    Bounds are inclusive; a last row gathers patches of unknown or other ages, so the patch counts add up
    to the number of rows.
    """
    ages = table.ages[rows]
    labels = table.labels[rows]
    correct = (np.asarray(scores) >= threshold) == (labels == 1)
    members = [(ages >= low) & (ages <= high) for low, high in groups]
    named = [(age_group_name(bounds), member) for bounds, member in zip(groups, members, strict=True)]
    rest = ~np.any(members, axis=0) if members else np.ones(len(rows), dtype=bool)
    if rest.any():
        named.append(("other/unknown", rest))
    out = []
    for name, member in named:
        count = int(member.sum())
        out.append({
            "age_group": name, "patches": count, "positives": int(labels[member].sum()),
            "negatives": int(count - labels[member].sum()), "correct": int(correct[member].sum()),
            "accuracy": float(correct[member].mean()) if count else float("nan"),
            "images": len(set(image_ids[rows][member])), "patients": len(set(table.groups[rows][member])),
        })
    return out


@dataclass
class EvaluationResult:
    """The report (as written to report.json) and where its files are."""

    out_dir: Path
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def _threshold_source(predictor: PatchPredictor, explicit: float | None) -> str:
    if explicit is not None:
        return "given (--threshold)"
    if "threshold" in predictor.model()[1]:
        return "checkpoint (slope-1 operating point on the validation patches)"
    return "default 0.5 (the checkpoint records none)"


def _roc_figure(labels: np.ndarray, scores: np.ndarray, summary: dict[str, Any], threshold: float,
                out_png: Path, title: str) -> Path | None:
    """ROC PNG with the slope-1 point and the threshold point, when both classes are present."""
    if summary["operating_point"] is None:
        return None
    at = summary["at_threshold"]
    point = operating_point(labels, scores)
    return plot_roc(roc_curve(labels, scores), summary["auc"], out_png, operating=point,
                    at_threshold=(threshold, 1.0 - at["specificity"], at["sensitivity"]), title=title)


def write_predictions(path: Path, images: Sequence[ScoredImage], table: PatchTable, paper: np.ndarray) -> Path:
    """predictions.csv: every tissue or calcified patch with its box, label, probability and paper-set flag."""
    in_paper = np.zeros(len(table.labels), dtype=bool)
    in_paper[paper] = True
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        boxes = {number: image.grid.boxes() for number, image in enumerate(images)}
        columns = {number: image.grid.shape[1] for number, image in enumerate(images)}
        for row, (owner, patch) in enumerate(zip(table.index.image, table.index.patch, strict=True)):
            record = images[owner].record
            top, left, bottom, right = (int(v) for v in boxes[owner][patch])
            writer.writerow([
                record.image_id, record.patient_id or "", "" if record.age is None else f"{record.age:g}",
                int(patch), int(patch) // columns[owner], int(patch) % columns[owner], top, left, bottom, right,
                int(table.tissue[row]), int(table.labels[row]), repr(float(table.probability[row])),
                int(in_paper[row]),
            ])
    return path


def _overlays(images: Sequence[ScoredImage], count: int, out_dir: Path) -> list[str]:
    """Figure-7-style PNGs (ground-truth patches | predicted patches) for the most calcified test images."""
    order = sorted(range(len(images)), key=lambda i: (-int(images[i].labels.sum()), i))[: max(0, count)]
    written = []
    for number in order:
        image = images[number]
        try:
            pixels = read_mammogram(image.record.image).pixels
        except PlaidInputError as exc:
            logger.warning("no overlay for %s", exc)
            continue
        boxes = boxes_on_source(image.grid.boxes(), (image.grid.height, image.grid.width), pixels.shape)
        path = render_overlay(
            pixels, boxes[image.predicted].tolist(), out_dir / f"{image.record.image_id}.png",
            ground_truth=boxes[image.labels].tolist(),
            title=f"{image.record.image_id}: {int(image.labels.sum())} calcified patches, "
                  f"{int(image.predicted.sum())} predicted (threshold {image.threshold:.3f})",
        )
        written.append(str(path))
    return written


def evaluate(
    selection: EvalSelection, predictor: PatchPredictor, settings: PatchSettings, out_dir: str | Path,
    config: EvalConfig, context: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Score the selected test images once and write report.md, report.json, predictions.csv, PNGs, overlays."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, problems = score_records(selection.records, predictor, settings, config.on_error, config.progress)
    if not images:
        raise PlaidInputError("no usable test image (every one was skipped; see the warnings above)")
    threshold = predictor.threshold()
    table = PatchTable.from_images(images)
    image_ids = np.array([images[i].record.image_id for i in table.index.image], dtype=object)
    paper = paper_rows(table, config.seed, config.paper_pairs)
    files: dict[str, str] = {"predictions": str(write_predictions(out_dir / "predictions.csv", images, table, paper))}

    paper_labels, paper_scores = table.labels[paper], table.probability[paper]
    paper_summary = binary_summary(paper_labels, paper_scores, threshold)
    paper_summary["pairs_requested"] = config.paper_pairs
    paper_summary["age_groups"] = age_table(table, paper, paper_scores, image_ids, threshold,
                                              config.age_groups)
    paper_summary["bootstrap"] = bootstrap_metrics(table.groups[paper], paper_labels, paper_scores, threshold,
                                                   config.bootstrap, config.seed, config.confidence).to_dict()
    roc_png = _roc_figure(paper_labels, paper_scores, paper_summary, threshold, out_dir / "roc_paper.png",
                          "ROC, paper protocol (balanced patches)")

    real_labels, real_scores = table.labels, table.app_scores
    realistic = binary_summary(real_labels, real_scores, threshold)
    realistic["prevalence"] = realistic["positives"] / realistic["patches"] if realistic["patches"] else None
    realistic["calcified_patches_outside_tissue"] = int(((table.labels == 1) & ~table.tissue).sum())
    at = realistic["at_threshold"] or {"false_positives": 0}
    realistic["false_positive_patches_per_image"] = at["false_positives"] / len(images)
    image_labels = np.array([image.image_label for image in images], dtype=np.int64)
    image_scores = np.array([image.image_score for image in images])
    realistic["image_level"] = {
        "images": len(images), "calcified_images": int(image_labels.sum()),
        "auc": safe_auc(image_labels, image_scores),
        "at_threshold": confusion_at(image_labels, image_scores, threshold).to_dict(),
    }
    froc = froc_curve(np.concatenate([image.regions for image in images]),
                      real_scores[(real_labels == 0) & table.tissue], len(images))
    realistic["froc"] = _froc_summary(froc, threshold)
    realistic["bootstrap"] = bootstrap_metrics(table.groups, real_labels, real_scores, threshold, config.bootstrap,
                                               config.seed, config.confidence).to_dict()
    real_roc_png = _roc_figure(real_labels, real_scores, realistic, threshold, out_dir / "roc_realistic.png",
                               "ROC, realistic protocol (all tissue patches)")
    froc_png = plot_froc(froc, out_dir / "froc.png", (threshold, *reversed(froc.at_threshold(threshold))))

    files.update({"roc_paper": str(roc_png) if roc_png else None,
                  "roc_realistic": str(real_roc_png) if real_roc_png else None, "froc": str(froc_png)})
    files["overlays"] = _overlays(images, config.overlays, out_dir / "overlays")
    split = selection.describe()
    split["scored_images"] = [image.record.image_id for image in images]
    report = {
        **(context or {}),
        "threshold": threshold,
        "threshold_source": _threshold_source(predictor, config.threshold),
        "seed": config.seed,
        "patch_settings": asdict(settings),
        "test_images": len(images),
        "test_patients": len({image.record.group for image in images}),
        "problems": [asdict(problem) for problem in problems],
        "paper_protocol": paper_summary,
        "realistic_protocol": realistic,
        "per_image": [image.summary() for image in images],
        "split": split,
        "files": {key: _relative(value, out_dir) for key, value in files.items()},
    }
    write_json(out_dir / "split.json", split)
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(render_markdown(report))
    files.update({"report_json": str(out_dir / "report.json"), "report_md": str(out_dir / "report.md"),
                  "split": str(out_dir / "split.json")})
    return EvaluationResult(out_dir=out_dir, report=report, files=files)


def _froc_summary(froc: FrocCurve, threshold: float) -> dict[str, Any]:
    sensitivity, fp_rate = froc.at_threshold(threshold)
    return {
        "regions": froc.regions, "images": froc.images,
        "at_threshold": {"sensitivity": sensitivity if froc.regions else None, "fp_per_image": fp_rate},
        "sensitivity_at_fp_per_image": froc.sensitivity_at_rates() if froc.regions else {},
        "curve": froc.points(),
    }


def _relative(value: Any, base: Path) -> Any:
    """Paths inside the report folder as relative strings (lists handled element-wise)."""
    if isinstance(value, list):
        return [_relative(item, base) for item in value]
    if value is None:
        return None
    try:
        return str(Path(value).relative_to(base))
    except ValueError:
        return str(value)

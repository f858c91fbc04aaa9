"""Evaluate a trained checkpoint on held-out images and write the report folder.

The report leads with the figures a reader of films needs (`plaid.evaluate.headline`: region sensitivity at
0.25-2 false patches per film, the image AUC, and the stored threshold's false marks per film, each with a
bootstrap interval by patient); the paper and realistic protocols follow. Both protocols
(`plaid.evaluate.protocols`) share one pass of the predictor over the test images (the same `PatchPredictor`
the app's infer task uses; `plaid.evaluate.scoring`). The folder holds report.md,
report.json, predictions.csv, ROC and FROC figures and overlays.
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
from plaid.evaluate.headline import FilmScores, at_threshold, headline_figures, stored_operating_point
from plaid.evaluate.overlays import render_overlay
from plaid.evaluate.plots import plot_froc, plot_roc
from plaid.evaluate.protocols import DEFAULT_AGE_GROUPS, paper_protocol, paper_rows, realistic_protocol
from plaid.evaluate.report import render_markdown
from plaid.evaluate.scoring import PatchTable, ScoredImage, score_records
from plaid.infer.predictor import PatchPredictor
from plaid.metrics import operating_point, roc_curve
from plaid.patches.prepared import PreparedImage
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM
from plaid.serialization import write_json
from plaid.train.holdout import EvalSelection

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("image_id", "patient_id", "age", "patch", "grid_row", "grid_col", "top", "left", "bottom",
                      "right", "tissue", "label", "probability", "paper_set")


@dataclass
class EvalConfig:
    """Evaluation knobs (the threshold and tiling are the predictor's)."""

    seed: int = 0
    paper_pairs: int | None = None
    bootstrap: int = 1000
    confidence: float = 0.95
    age_groups: tuple[tuple[float, float], ...] = DEFAULT_AGE_GROUPS
    overlays: int = 4
    on_error: str = "skip"
    progress: bool = True
    cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM


@dataclass
class EvaluationResult:
    """The report (as written to report.json) and where its files are."""

    out_dir: Path
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def _threshold_source(predictor: PatchPredictor) -> str:
    """Where the threshold in force comes from, in words."""
    meta = predictor.model()[1]
    if predictor.config.threshold is not None:
        return ("given (--threshold; if it was read off this data's own FROC or ROC it was chosen on these test "
                "films, and its figures are optimistic)")
    if "threshold" not in meta:
        return "default 0.5 (the checkpoint records none)"
    if meta.get("threshold_source"):
        return f"checkpoint ({meta['threshold_source']})"
    point = meta.get("operating_point")
    if point and point != "slope1":
        limit, given = meta.get("max_false_marks_per_image"), meta.get("validation_false_marks_per_image")
        text = f"checkpoint ({point}" + (f", at most {limit:g} false marks per validation film" if limit is not None
                                         else "")
        if given is not None and meta.get("operating_point_films"):
            text += (f"; {given:.2f} on its {meta['operating_point_films']} "
                     f"{meta.get('operating_point_films_source', 'validation')} films")
        return text + ")"
    return "checkpoint (slope-1 operating point on the validation patches)"


def film_scores(images: Sequence[ScoredImage]) -> list[FilmScores]:
    """What the headline figures need of each scored image."""
    return [FilmScores(patient=image.record.group, regions=image.regions,
                       negatives=image.probabilities[image.tissue & ~image.labels], calcified=image.image_label,
                       score=image.image_score, located=image.located) for image in images]


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


@dataclass
class OverlayPicks:
    """The ``count`` most calcified scored images (the earlier one on ties), each with the prepared pixels it
    was scored on, gathered while scoring so that overlays never read an image file again."""

    count: int
    picked: list[tuple[tuple[int, int], ScoredImage, np.ndarray]] = field(default_factory=list)
    seen: int = 0

    def offer(self, prepared: PreparedImage, scored: ScoredImage) -> None:
        """Keep this image if it is among the ``count`` most calcified so far."""
        key = (-int(scored.labels.sum()), self.seen)
        self.seen += 1
        if self.count > 0:
            self.picked.append((key, scored, prepared.pixels))
            self.picked.sort(key=lambda item: item[0])
            del self.picked[self.count:]

    def write(self, out_dir: Path) -> list[str]:
        """Figure-7-style PNGs (ground-truth patches | predicted patches) on the images as they were tiled."""
        written = []
        for _, image, pixels in self.picked:
            boxes = image.grid.boxes()
            path = render_overlay(
                pixels, boxes[image.predicted].tolist(), out_dir / f"{image.record.image_id}.png",
                ground_truth=boxes[image.labels].tolist(),
                title=f"{image.record.image_id}: {int(image.labels.sum())} calcified patches, "
                      f"{int(image.predicted.sum())} predicted (threshold {image.threshold:.3f})",
            )
            written.append(str(path))
        return written


def evaluate(
    selection: EvalSelection, predictor: PatchPredictor, out_dir: str | Path,
    config: EvalConfig, context: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Score the selected test images once and write report.md, report.json, predictions.csv, PNGs, overlays."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlays = OverlayPicks(config.overlays)
    settings = predictor.patch_settings()
    films, problems = score_records(selection.records, predictor, config.on_error, config.progress,
                                    keep=overlays.offer, cluster_gap_mm=config.cluster_gap_mm)
    images = [film for film in films if film.located]  # the patch protocols need patch labels
    if not images:
        raise PlaidInputError("no usable test image with a mask (every one was skipped or is calcified only at "
                              "image level; see the warnings above)")
    threshold = predictor.threshold()
    table = PatchTable.from_images(images)
    image_ids = np.array([images[i].record.image_id for i in table.index.image], dtype=object)
    paper = paper_rows(table, config.seed, config.paper_pairs)
    files: dict[str, str] = {"predictions": str(write_predictions(out_dir / "predictions.csv", images, table, paper))}

    paper_summary = paper_protocol(table, paper, image_ids, threshold, config.paper_pairs, config.age_groups,
                                   config.bootstrap, config.seed, config.confidence)
    roc_png = _roc_figure(table.labels[paper], table.probability[paper], paper_summary, threshold,
                          out_dir / "roc_paper.png", "ROC, paper protocol (balanced patches)")
    realistic, froc = realistic_protocol(images, table, threshold, config.bootstrap, config.seed, config.confidence)
    real_roc_png = _roc_figure(table.labels, table.app_scores, realistic, threshold, out_dir / "roc_realistic.png",
                               "ROC, realistic protocol (all tissue patches)")
    froc_png = plot_froc(froc, out_dir / "froc.png", (threshold, *reversed(froc.at_threshold(threshold))))

    files.update({"roc_paper": str(roc_png) if roc_png else None,
                  "roc_realistic": str(real_roc_png) if real_roc_png else None, "froc": str(froc_png)})
    files["overlays"] = overlays.write(out_dir / "overlays")
    split = selection.describe()
    split["scored_images"] = [film.record.image_id for film in films]
    meta = predictor.model()[1]
    scores = film_scores(films)
    given = predictor.config.threshold is not None and "threshold" in meta
    stored = float(meta["threshold"]) if given else threshold
    headline = headline_figures(scores, stored, config.bootstrap, config.seed, config.confidence)
    headline["at_threshold"].update(source=_threshold_source(predictor) if not given else "checkpoint (stored)",
                                    checkpoint=stored_operating_point(meta))
    if given:  # the stored operating point stays first; the given threshold follows, marked as such
        headline["at_given_threshold"] = {"threshold": threshold, "source": _threshold_source(predictor),
                                          **at_threshold(scores, threshold)}
    report = {
        "headline": headline,
        "seen_films_included": selection.includes_seen_films,
        **(context or {}),
        "threshold": threshold,
        "threshold_source": _threshold_source(predictor),
        "seed": config.seed,
        "cluster_gap_mm": config.cluster_gap_mm,
        "patch_settings": asdict(settings),
        "test_images": len(films),
        "test_patients": len({film.record.group for film in films}),
        "image_level_only_films": [film.record.image_id for film in films if not film.located],
        "problems": [asdict(problem) for problem in problems],
        "paper_protocol": paper_summary,
        "realistic_protocol": realistic,
        "per_image": [film.summary() for film in films],
        "split": split,
        "files": {key: _relative(value, out_dir) for key, value in files.items()},
    }
    write_json(out_dir / "split.json", split)
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(render_markdown(report))
    files.update({"report_json": str(out_dir / "report.json"), "report_md": str(out_dir / "report.md"),
                  "split": str(out_dir / "split.json")})
    return EvaluationResult(out_dir=out_dir, report=report, files=files)


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

"""Rescore a finished `plaid crossval` run's fold models without and with flip TTA, on the films the run scored
and on every held-out film.

Usage: python benchmarks/rescore_crossval.py CROSSVAL_DIR DATA

Reads CROSSVAL_DIR/crossval.json (config, each fold's held-out patients, `normal_images_per_fold`, checkpoint)
and each fold's model, prepares DATA's films once and prints per fold and as mean ± sd across folds the
paper-protocol, realistic and image-level AUC twice: on the films the cross-validation itself scored (every
held-out calcified film plus the same seeded choice of normal ones, so the first row repeats crossval.json)
and on all held-out films. Nothing is trained, so it shows what a scoring option changes on the same models.
With --films FILE it also writes one row per held-out film, scored with TTA (`film_results`' fields plus the
fold and how many of the fold's normal films score at least as high as each calcified one). With
--paper-draws N it also prints, per fold and TTA setting, the mean and sd of the paper-protocol AUC over N
draws of the negatives: how far one draw (the paper's protocol, and crossval's figure) can land from the
realistic AUC that the draws average to. What it measured is in benchmarks/research-log.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from plaid.evaluate.crossval import (
    ScoredFoldImage,
    film_results,
    fold_metrics,
    image_truth,
    mean_sd,
    paper_auc_draws,
    prepare_case,
    score_fold_images,
    test_images,
)
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import load_records
from plaid.patches.prepared import process_records
from plaid.train.checkpointing import BEST_CHECKPOINT, LAST_CHECKPOINT
from plaid.train.config import TrainConfig

SHOWN = ("paper_auc", "realistic_auc", "image_auc")


def ranked_films(scored: Sequence[ScoredFoldImage], threshold: float, fold: int) -> list[dict[str, Any]]:
    """`film_results` rows of one fold, each with the fold and, for a calcified film, the number of the fold's
    normal films whose image score is at least its own."""
    rows = film_results(scored, threshold)
    normal = np.array([row["image_score"] for row in rows if not row["calcified"]])
    for row in rows:
        row.update(fold=fold, normal_films=len(normal),
                   normal_films_at_or_above=int((normal >= row["image_score"]).sum()) if row["calcified"] else None)
    return rows


def rescore(crossval_dir: Path, data: Path, film_rows: list[dict[str, Any]] | None = None,
            paper_draws: int = 0) -> dict[str, dict[str, list[float]]]:
    """{"<films>, TTA <off|on>": {metric: per-fold values}} for the run's scored films and all held-out films;
    appends the TTA-on rows of every held-out film to ``film_rows`` when given, and prints each fold's
    paper-protocol AUC over ``paper_draws`` draws when that is above 0."""
    report = json.loads((crossval_dir / "crossval.json").read_text())
    config = TrainConfig.from_mapping(report["config"])
    records = [r for r in load_records(data) if r.label or r.calcified]
    prepared, _ = process_records(records, lambda r: prepare_case(r, config), progress=False, description="")
    checkpoint = LAST_CHECKPOINT if report.get("checkpoint") == "last" else BEST_CHECKPOINT
    results: dict[str, dict[str, list[float]]] = {}
    for fold in report["folds"]:
        number = fold["fold"] - 1
        held = [image for image in prepared if image.record.group in set(fold["test_patients"])]
        chosen = {image.record.image_id
                  for image in test_images(held, report.get("normal_images_per_fold"), config.seed + number)}
        patches = config.patch_settings
        infer = InferConfig(patch_size=patches.patch_size, stride=patches.stride, batch_size=128, device="cpu")
        predictor = PatchPredictor(crossval_dir / f"fold-{fold['fold']}" / checkpoint, infer, checkpoint_settings=False)
        for tta in (False, True):
            predictor.config = replace(infer, tta_flips=tta)  # one model load and runtime export per fold
            scored = score_fold_images(predictor, held)
            if tta and film_rows is not None:
                film_rows.extend(ranked_films(scored, 0.5, fold["fold"]))
            for films, subset in (("scored films", [s for s in scored if s.image_id in chosen]),
                                  ("all held-out films", scored)):
                metrics = fold_metrics(subset, 0.5, seed=config.seed + number)
                row = results.setdefault(f"{films}, TTA {'on' if tta else 'off'}", {name: [] for name in SHOWN})
                for name in SHOWN:
                    row[name].append(metrics[name])
                if paper_draws:
                    values = paper_auc_draws(subset, paper_draws, config.seed + number)
                    print(f"fold {fold['fold']}, {films}, TTA {'on' if tta else 'off'}: paper AUC over {paper_draws} "
                          f"draws {np.nanmean(values):.3f} ± {np.nanstd(values):.3f} (5-95% "
                          f"{np.nanquantile(values, 0.05):.2f}-{np.nanquantile(values, 0.95):.2f}), one draw "
                          f"{metrics['paper_auc']:.3f}, realistic {metrics['realistic_auc']:.3f}", flush=True)
        print(f"fold {fold['fold']}: {len(held)} held-out films, {sum(image_truth(i) for i in held)} calcified, "
              f"{len(chosen)} scored by the run", flush=True)
    return results


def main() -> None:
    """Print the rescoring table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crossval_dir", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--films", type=Path, help="write every held-out film's TTA row to this JSON file")
    parser.add_argument("--paper-draws", type=int, default=0, metavar="N",
                        help="also print each fold's paper-protocol AUC as mean and sd over N draws of negatives")
    args = parser.parse_args()
    films: list[dict[str, Any]] | None = [] if args.films else None
    results = rescore(args.crossval_dir, args.data, films, args.paper_draws)
    if args.films:
        args.films.write_text(json.dumps(films, indent=1))
    print(f"| films, TTA | {' | '.join(SHOWN)} | per fold ({' / '.join(SHOWN)}) |")
    print(f"| --- | {' | '.join('---' for _ in SHOWN)} | --- |")
    for label, metrics in results.items():
        summaries = [mean_sd(metrics[name]) for name in SHOWN]
        cells = [f"{summary['mean']:.2f} ± {summary['sd']:.2f}" for summary in summaries]
        folds = ", ".join(" / ".join(f"{metrics[name][k]:.2f}" for name in SHOWN)
                          for k in range(len(metrics[SHOWN[0]])))
        print(f"| {label} | {' | '.join(cells)} | {folds} |")
    if np.isnan([v for m in results.values() for values in m.values() for v in values]).any():
        print("(NaN: a fold with one class only; left out of the mean)")


if __name__ == "__main__":
    main()

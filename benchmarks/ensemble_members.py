"""Each member of a cross-validated ensemble scored alone, beside the ensemble: the seed study of a recipe.

Usage: python benchmarks/ensemble_members.py CROSSVAL_DIR DATA [--bootstrap N]

CROSSVAL_DIR is a finished `plaid crossval ... --ensemble-members K` run. Every fold holds K members (seeds
SEED .. SEED+K-1) trained on one split. Each member's best.pt is scored on the films the run scored for that
fold (the same seeded choice of normal films), as the predictor serves it, and the held-out films of all
folds are pooled: FROC region sensitivity at 0.25 / 0.5 / 1 / 2 false patches per film, the image AUC, and
the false patches per film and region sensitivity at each fold model's stored threshold. The ensemble's row
repeats crossval.json's pooled figures; the last row gives mean ± sd over the members, the spread a single
seed of the recipe shows. What it measured is in benchmarks/research-log.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plaid.evaluate.crossval import prepare_case, score_fold_images, test_images
from plaid.evaluate.headline import HEADLINE_FP_RATES, FilmScores, headline_figures, rate_key
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import load_records
from plaid.patches.prepared import process_records
from plaid.train.checkpointing import BEST_CHECKPOINT
from plaid.train.config import TrainConfig
from plaid.train.members import MEMBER_FOLDER


def threshold_counts(films: Sequence[FilmScores], threshold: float) -> np.ndarray:
    """(false patches, located films, calcified regions touched, calcified regions) of one fold's films at its
    model's stored threshold, to be summed over folds."""
    located = [film for film in films if film.located]
    return np.array([sum(int((film.negatives >= threshold).sum()) for film in located), len(located),
                     sum(int((film.regions >= threshold).sum()) for film in located),
                     sum(len(film.regions) for film in located)], dtype=np.float64)


def pooled_row(films: Sequence[FilmScores], counts: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any]:
    """Pooled FROC and image AUC (with its interval by patient), and the stored thresholds' figures."""
    figures = headline_figures(films, None, iterations=bootstrap, seed=seed)
    false_marks, located, touched, regions = counts
    return {
        "froc": {rate_key(item["fp_per_film"]): item["value"] for item in figures["froc"]},
        "image_auc": figures["image_auc"]["value"],
        "image_auc_interval": figures["image_auc"].get("interval"),
        "false_marks_per_film_at_threshold": false_marks / located if located else float("nan"),
        "region_sensitivity_at_threshold": touched / regions if regions else float("nan"),
        "films": figures["films"], "calcified_films": figures["calcified_films"], "regions": figures["regions"],
    }


def score_members(crossval_dir: Path, data: Path, bootstrap: int) -> dict[str, dict[str, Any]]:
    """{model name: pooled row} for every member and the ensemble of the run in ``crossval_dir``."""
    report = json.loads((crossval_dir / "crossval.json").read_text())
    config = TrainConfig.from_mapping(report["config"])
    records = [r for r in load_records(data) if r.label or r.calcified]
    prepared, _ = process_records(records, lambda r: prepare_case(r, config), progress=False, description="")
    patches = config.patch_settings
    infer = InferConfig(patch_size=patches.patch_size, stride=patches.stride, batch_size=128, device="cpu",
                        tta_flips=config.tta_flips)
    names = [MEMBER_FOLDER.format(k + 1) for k in range(config.ensemble_members)] + ["ensemble"]
    films: dict[str, list[FilmScores]] = {name: [] for name in names}
    counts = {name: np.zeros(4) for name in names}
    for fold in report["folds"]:
        number = fold["fold"] - 1
        held = [image for image in prepared if image.record.group in set(fold["test_patients"])]
        chosen = test_images(held, report.get("normal_images_per_fold"), config.seed + number)
        fold_dir = crossval_dir / f"fold-{fold['fold']}"
        for name in names:
            path = fold_dir / BEST_CHECKPOINT if name == "ensemble" else fold_dir / name / BEST_CHECKPOINT
            predictor = PatchPredictor(path, infer, checkpoint_settings=False)
            scored = [image.film() for image in score_fold_images(predictor, chosen)]
            films[name] += scored
            counts[name] += threshold_counts(scored, predictor.threshold())
        print(f"fold {fold['fold']}: {len(chosen)} films scored", flush=True)
    return {name: pooled_row(films[name], counts[name], bootstrap, config.seed) for name in names}


def main() -> None:
    """Print one row per member, the ensemble and the members' mean ± sd."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crossval_dir", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--bootstrap", type=int, default=200, help="patient resamples for the image AUC interval")
    args = parser.parse_args()
    rows = score_members(args.crossval_dir, args.data, args.bootstrap)
    rates = [rate_key(rate) for rate in HEADLINE_FP_RATES]
    columns = [*(f"FROC@{rate}" for rate in rates), "image AUC", "FP/film at threshold", "region sens at threshold"]

    def cells(row: dict[str, Any]) -> list[float]:
        return [*(row["froc"][rate] for rate in rates), row["image_auc"], row["false_marks_per_film_at_threshold"],
                row["region_sensitivity_at_threshold"]]

    print(f"| model | {' | '.join(columns)} |")
    print(f"| --- | {' | '.join('---' for _ in columns)} |")
    for name, row in rows.items():
        print(f"| {name} | {' | '.join(f'{value:.2f}' for value in cells(row))} |")
    members = np.array([cells(row) for name, row in rows.items() if name != "ensemble"])
    spread = [f"{mean:.2f} ± {sd:.2f}" for mean, sd in zip(members.mean(0), members.std(0, ddof=1), strict=True)]
    print(f"| members, mean ± sd | {' | '.join(spread)} |")
    first = next(iter(rows.values()))
    intervals = ", ".join(f"{name} {low:.2f}-{high:.2f}" for name, row in rows.items()
                          for low, high in [row["image_auc_interval"]] if low is not None)
    print(f"({first['films']} films, {first['calcified_films']} calcified, {first['regions']} regions; image AUC "
          f"intervals: {intervals})")
    (args.crossval_dir / "members.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

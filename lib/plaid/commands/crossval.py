"""`plaid crossval`: k-fold cross-validation split by patient, each metric as mean ± sd across folds."""

from __future__ import annotations

import argparse
from pathlib import Path

from plaid.commands.train import add_config_options, config_from_args
from plaid.evaluate.crossval import BASELINE_METRICS, METRICS, SUMMARY_FILE, run_crossval
from plaid.io.datalist import load_records


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `crossval` sub-command."""
    parser = subparsers.add_parser(
        "crossval", help="k-fold cross-validation split by patient",
        description="Train on k-1 folds of patients and score the held-out fold, k times; reports first the "
                    "FROC region sensitivity at 0.25/0.5/1/2 false patches per film and the image-level AUC "
                    "(pooled over held-out films with bootstrap intervals by patient, and per fold), then false "
                    "positives per image at the stored threshold and the paper-protocol and realistic patch AUC "
                    "as mean ± sd across folds, beside a brightness baseline (patches scored by mean "
                    "intensity) on the same patches and images.",
    )
    parser.add_argument("data", type=Path, help="folder (images + masks/, metadata.csv) or datalist JSON/CSV")
    parser.add_argument("--out", type=Path, required=True, help="folder for fold models and crossval.json")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="score each fold's best-validation model (default) or its last epoch")
    parser.add_argument("--only-folds", type=int,
                        help="run only the first N folds (a cheaper estimate while comparing settings)")
    parser.add_argument("--normal-images", type=int,
                        help="score all held-out calcified images but only N random normal ones per fold "
                             "(default: all; for slow machines)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the folds and print the summary table."""
    config = config_from_args(args)
    result = run_crossval(load_records(args.data), config, args.out, folds=args.folds, checkpoint=args.checkpoint,
                          progress=args.progress, only_folds=args.only_folds,
                          normal_images=args.normal_images)
    print(f"{args.folds}-fold cross-validation by patient, {len(result.folds)} folds run "
          f"({args.out / SUMMARY_FILE})")
    pooled = result.pooled
    print(f"pooled over {pooled['films']} held-out films of {pooled['patients']} patients ({pooled['regions']} "
          f"calcified regions), 95% bootstrap intervals by patient:")
    for item in pooled["froc"]:
        print(f"  region sensitivity at {item['fp_per_film']:g} false patches per film  {_with_interval(item)}")
    print(f"  image AUC  {_with_interval(pooled['image_auc'])}")
    print("per fold, mean ± sd:")
    for name in METRICS + BASELINE_METRICS:
        item = result.summary[name]
        print(f"  {name:34s} {item['mean']:.3f} ± {item['sd']:.3f}  ({item['folds']} folds)")
    return 0


def _with_interval(entry: dict) -> str:
    """'0.820 (0.640-1.000)', 'n/a' parts where undefined."""
    def fmt(value: float | None) -> str:
        return "n/a" if value is None or value != value else f"{value:.3f}"
    low, high = entry["interval"]
    return f"{fmt(entry['value'])} ({fmt(low)}-{fmt(high)})"

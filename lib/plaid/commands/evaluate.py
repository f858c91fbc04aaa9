"""`plaid evaluate`: score held-out images with a checkpoint and write the report folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plaid.commands import add_run_options, predictor_from_args
from plaid.errors import PlaidInputError
from plaid.evaluate.protocols import DEFAULT_AGE_GROUPS, age_group_name, parse_age_groups
from plaid.evaluate.run import EvalConfig, evaluate
from plaid.infer.predictor import InferConfig
from plaid.io.datalist import load_records
from plaid.options import argparse_help, option_fields
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM
from plaid.train.checkpointing import SPLIT_FILE
from plaid.train.holdout import select_test_records

logger = logging.getLogger(__name__)

MAX_CLUSTER_GAP_MM = 100.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` sub-command."""
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint: FROC and image AUC first, then the paper and realistic protocols",
        description="Score the test images with the app's predictor and write report.md, report.json (leading "
                    "with region sensitivity at 0.25/0.5/1/2 false patches per film, the image AUC and the stored "
                    "threshold's false marks per film, with bootstrap intervals by patient), "
                    "predictions.csv, ROC/FROC PNGs and overlays. Test images: --split FILE, or --test-fraction "
                    "(re-derives the split plaid train --test-fraction made), else the test split stored in the "
                    "checkpoint (or split.json beside it), else every image of patients the model did not train on.",
    )
    parser.add_argument("data", type=Path, help="folder (images + labels/final/ or masks/) or datalist JSON/CSV")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint, e.g. MODEL_DIR/best.pt")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--threshold", type=float, help=argparse_help(option_fields(InferConfig)["threshold"]))
    parser.add_argument("--seed", type=int, help="seed for the test split, balanced set and bootstrap "
                                                 "(default: the training seed recorded in the checkpoint)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--split", type=Path, help="split.json whose 'test' part lists the test images")
    choice.add_argument("--test-fraction", type=float, help="re-derive the held-out split by patient")
    choice.add_argument("--all", dest="use_all", action="store_true",
                        help="evaluate on every image in DATA, films the model trained on or whose films chose its "
                             "threshold included (the report's first line says so); without it such films are refused")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0: none)")
    parser.add_argument("--age-groups", default=",".join(age_group_name(g) for g in DEFAULT_AGE_GROUPS),
                        help="inclusive age ranges for the accuracy table (default %(default)s)")
    parser.add_argument("--paper-pairs", type=int, help="paper protocol with N calcified + N normal patches")
    parser.add_argument("--cluster-gap-mm", type=float, default=DEFAULT_CLUSTER_GAP_MM,
                        help="calcified marks at most this far apart form one region (a cluster) in the FROC; 0 counts "
                             "every 8-connected mark alone (default %(default)s)")
    parser.add_argument("--overlays", type=int, default=4, help="number of overlay PNGs (default %(default)s)")
    add_run_options(parser, "bad images/masks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Choose the test images, evaluate, and print where the report is."""
    age_groups = parse_age_groups(args.age_groups)
    if not 0.0 <= args.cluster_gap_mm <= MAX_CLUSTER_GAP_MM:
        raise PlaidInputError(f"--cluster-gap-mm must be between 0 and {MAX_CLUSTER_GAP_MM:g}, "
                              f"got {args.cluster_gap_mm}")
    predictor = predictor_from_args(args)
    meta = predictor.model()[1]
    trained_seed = (meta.get("config") or {}).get("seed", 0)
    seed = int(args.seed if args.seed is not None else trained_seed)
    model_split = meta.get("split") if isinstance(meta.get("split"), dict) else args.model.parent / SPLIT_FILE
    selection = select_test_records(load_records(args.data), model_split=model_split,
                                    split_file=args.split, test_fraction=args.test_fraction, seed=seed,
                                    use_all=args.use_all, threshold_films=meta.get("threshold_films") or ())
    logger.info("evaluating on %d images (%s)", len(selection.records), selection.source)
    config = EvalConfig(seed=seed, paper_pairs=args.paper_pairs, bootstrap=args.bootstrap,
                        age_groups=age_groups, overlays=args.overlays, on_error=args.on_error,
                        progress=args.progress, cluster_gap_mm=args.cluster_gap_mm)
    result = evaluate(selection, predictor, args.out, config,
                      context={"model": str(args.model), "data": str(args.data)})
    report = result.report
    headline = report["headline"]
    print("region sensitivity at " + ", ".join(f"{item['fp_per_film']:g}: {_fmt(item['value'])}"
                                               for item in headline["froc"])
          + f" false patches per film; image AUC {_fmt(headline['image_auc']['value'])}")
    at = headline["at_threshold"]
    print(f"at the threshold {at['threshold']:.4f}: {_fmt(at['false_marks_per_film']['value'])} false patches per "
          f"film, region sensitivity {_fmt(at['region_sensitivity']['value'])}")
    paper, real = report["paper_protocol"], report["realistic_protocol"]
    accuracy = (paper["at_threshold"] or {}).get("accuracy")
    print(f"paper protocol: {paper['patches']} patches, AUC {_fmt(paper['auc'])}, accuracy {_fmt(accuracy)} "
          f"at threshold {report['threshold']:.4f}")
    print(f"realistic protocol: {real['patches']} patches, AUC {_fmt(real['auc'])}, "
          f"{real['false_positive_patches_per_image']:.2f} false-positive patches per image")
    if report["problems"]:
        print(f"skipped {len(report['problems'])} files:")
        for problem in report["problems"]:
            print(f"  {problem['message']}")
    print(f"report: {result.files['report_md']}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"

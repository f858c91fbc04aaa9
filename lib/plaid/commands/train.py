"""`plaid train`: the shared training loop (`plaid.train.records.train_from_records`) from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from plaid.evaluate.plots import plot_training_curves
from plaid.io.datalist import CaseRecord, load_records
from plaid.model.input_filter import INPUT_FILTERS
from plaid.model.network import ARCHITECTURES
from plaid.options import argparse_help
from plaid.serialization import write_json
from plaid.train.checkpointing import HISTORY_FILE, SPLIT_FILE
from plaid.train.config import TrainConfig, option_field
from plaid.train.holdout import TEST_PART, describe_holdout, holdout_split, read_split, records_in_part
from plaid.train.loop import TrainResult
from plaid.train.operating_point import OPERATING_POINTS
from plaid.train.recipes import config_with_overrides
from plaid.train.records import train_from_records

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
SUMMARY_FILE = "train_summary.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` sub-command."""
    parser = subparsers.add_parser(
        "train", help="train the patch classifier (--resume continues MODEL_DIR/last.pt)",
        description="Train the ResNet50 patch classifier with balanced patch sampling. Defaults follow the paper "
                    "(Adam 1e-4, batch 32, 120 epochs, 5% validation by patient).",
    )
    parser.add_argument("data", type=Path, help="folder (images + labels/final/ or masks/) or datalist JSON/CSV")
    parser.add_argument("--out", type=Path, required=True, help="model folder (best.pt, last.pt, history.json, ...)")
    add_config_options(parser)
    parser.add_argument("--test-fraction", type=float,
                        help="hold out this share of patients as a test set, recorded in MODEL_DIR/split.json")
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                        help="bad images/masks: skip them with a warning (default) or stop with an error")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in MODEL_DIR from last.pt; its stored settings must match (only "
                             "--epochs and --device may change). Without it an existing run is never touched")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(handler=run)


CONFIG_FLAGS = ("epochs", "batch_size", "learning_rate", "frozen_layers", "negative_ratio", "val_fraction", "seed",
                "device", "weights_path", "pretrained", "offline", "patch_size", "target_spacing_mm",
                "pixel_spacing_mm", "class_weighted_loss", "inserted_positives", "tta_flips", "architecture",
                "input_filter", "pretrain_steps", "pretrain_learning_rate", "operating_point",
                "max_false_marks_per_image", "operating_point_normal_women", "operating_point_min_normal_films",
                "ensemble_members")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The training options `plaid train` and `plaid crossval` share; each overrides the recipe's value. Their help
    is the `TrainConfig` field's (`plaid.options.option`), so it reads as the docs' training options table."""
    parser.add_argument("--recipe", type=Path, help="JSON file of training settings (e.g. recipes/mini-mias.json); "
                                                    "the flags below override it")
    parser.add_argument("--epochs", type=int, help=_help("epochs"))
    parser.add_argument("--batch-size", type=int, help=_help("batch_size"))
    parser.add_argument("--lr", type=float, dest="learning_rate", help=_help("learning_rate"))
    parser.add_argument("--frozen-layers", type=int, help=_help("frozen_layers"))
    parser.add_argument("--negative-ratio", type=float, help=_help("negative_ratio"))
    parser.add_argument("--class-weighted-loss", action=argparse.BooleanOptionalAction, default=None,
                        help=_help("class_weighted_loss"))
    parser.add_argument("--inserted-positives", type=int, help=_help("inserted_positives"))
    parser.add_argument("--pretrain-steps", type=int, help=_help("pretrain_steps"))
    parser.add_argument("--pretrain-lr", type=float, dest="pretrain_learning_rate",
                        help=_help("pretrain_learning_rate"))
    parser.add_argument("--patch-size", type=int, help=_help("patch_size"))
    parser.add_argument("--target-spacing-mm", type=float, help=_help("target_spacing_mm"))
    parser.add_argument("--pixel-spacing-mm", type=float, help=_help("pixel_spacing_mm"))
    parser.add_argument("--tta-flips", action=argparse.BooleanOptionalAction, default=None, help=_help("tta_flips"))
    parser.add_argument("--architecture", choices=tuple(ARCHITECTURES), help=_help("architecture"))
    parser.add_argument("--input-filter", choices=INPUT_FILTERS, help=_help("input_filter"))
    parser.add_argument("--val-fraction", type=float, help=_help("val_fraction"))
    parser.add_argument("--operating-point", choices=OPERATING_POINTS, help=_help("operating_point"))
    parser.add_argument("--max-false-marks-per-image", type=float, help=_help("max_false_marks_per_image"))
    parser.add_argument("--operating-point-normal-women", type=int, help=_help("operating_point_normal_women"))
    parser.add_argument("--operating-point-min-normal-films", type=int,
                        help=_help("operating_point_min_normal_films"))
    parser.add_argument("--seed", type=int, help=_help("seed"))
    parser.add_argument("--ensemble-members", type=int, help=_help("ensemble_members"))
    parser.add_argument("--device", help=_help("device"))
    parser.add_argument("--weights", dest="weights_path", help=_help("weights_path"))
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                        help=_help("pretrained"))
    parser.add_argument("--offline", action="store_true", default=None, help=_help("offline"))


def _help(name: str) -> str:
    """The argparse help of training option ``name``: its field's help text and default."""
    return argparse_help(option_field(name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the recipe (if any) and the options given on the command line, which override it."""
    return config_with_overrides(args.recipe, {key: getattr(args, key) for key in CONFIG_FLAGS})


def _draw_curves(out_dir: Path) -> str | None:
    """Where the training curves of the run in ``out_dir`` were drawn (None when it stored no history, as an
    ensemble's root folder)."""
    path = out_dir / HISTORY_FILE
    history = json.loads(path.read_text()) if path.is_file() else []
    return str(plot_training_curves(history, out_dir / CURVES_FILE)) if history else None


def _hold_out(args: argparse.Namespace, records: list[CaseRecord],
              seed: int) -> tuple[list[CaseRecord], list[CaseRecord], float | None]:
    """(training records, test records, test fraction): a new test split, or the one a resumed run recorded."""
    if args.test_fraction:
        development, test = holdout_split(records, args.test_fraction, seed)
        logger.info("holding out %d images of %d patients as the test set", len(test), len({r.group for r in test}))
        return development, test, args.test_fraction
    split_path = args.out / SPLIT_FILE
    previous = read_split(split_path) if args.resume and split_path.is_file() else {}
    if previous.get(TEST_PART):
        test, _ = records_in_part(records, previous, TEST_PART)
        logger.info("resuming: keeping the %d test images recorded in %s out of training", len(test), split_path)
        held = {r.image_id for r in test}
        return [r for r in records if r.image_id not in held], test, previous.get("test_fraction")
    return records, [], None


def run(args: argparse.Namespace) -> int:
    """Train (or resume), then draw the training curves and write train_summary.json."""
    config = config_from_args(args)
    records, test, fraction = _hold_out(args, load_records(args.data), config.seed)

    extra = describe_holdout(test, fraction, config.seed) if test else None
    result: TrainResult = train_from_records(records, config, args.out, resume=args.resume, on_error=args.on_error,
                                             progress=args.progress, extra_split=extra)
    curves = _draw_curves(args.out)
    summary = {
        "data": str(args.data),
        "out": str(args.out),
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "epochs_completed": len(result.history),
        "epochs_requested": config.epochs * config.ensemble_members,
        "resumed_from_epoch": result.resumed_from_epoch,
        "best_val_auc": result.best_val_auc,
        "operating_point": result.operating_point,
        "test_images": len(test),
        "skipped": [asdict(problem) for problem in result.problems],
        "training_curves": curves,
        "members": [{"out": str(member.out_dir), "seed": config.seed + number,
                     "best_checkpoint": str(member.best_checkpoint) if member.best_checkpoint else None,
                     "epochs_completed": len(member.history), "best_val_auc": member.best_val_auc,
                     "operating_point": member.operating_point,
                     "training_curves": _draw_curves(member.out_dir)}
                    for number, member in enumerate(result.members)],
    }
    write_json(args.out / SUMMARY_FILE, summary)
    if result.resumed_from_epoch:
        print(f"resumed from epoch {result.resumed_from_epoch}")
    for number, member in enumerate(summary["members"], start=1):
        print(f"member {number} (seed {member['seed']}): {member['epochs_completed']}/{config.epochs} epochs, best "
              f"validation AUC {member['best_val_auc']:.4f} -> {member['best_checkpoint']}")
    print(f"trained {len(result.history)}/{summary['epochs_requested']} epochs; best validation AUC "
          f"{result.best_val_auc:.4f}{' (mean over members)' if result.members else ''}")
    print(f"best checkpoint: {result.best_checkpoint}")
    point = result.operating_point
    if point:
        print(f"threshold {point['threshold']:.4f} ({point['operating_point']}): "
              f"{point['validation_false_marks_per_image']:.2f} false marks per film on "
              f"{point['operating_point_films']} {point['operating_point_films_source']} films")
    if curves:
        print(f"training curves: {curves}")
    if test:
        print(f"test split ({len(test)} images): {args.out / SPLIT_FILE}")
    if result.problems:
        print(f"skipped {len(result.problems)} files:")
        for problem in result.problems:
            print(f"  {problem.message}")
    return 0

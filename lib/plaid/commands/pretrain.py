"""`plaid pretrain`: offline backbone pretraining on unlabelled normal tissue patches (no download)."""

from __future__ import annotations

import argparse
from pathlib import Path

from plaid.io.datalist import load_records
from plaid.model.input_filter import INPUT_FILTERS
from plaid.model.network import ARCHITECTURES
from plaid.train.pretrain import TASKS, PretrainConfig, pretrain


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `pretrain` sub-command."""
    parser = subparsers.add_parser(
        "pretrain", help="pretrain the backbone offline on normal tissue patches",
        description="Pretrain on tissue patches of images without calcification: the 'inserted' task tells plain "
                    "patches from patches with a synthetic calcification cluster pasted in. Writes "
                    "torchvision-format weights for `plaid train --weights`.",
    )
    parser.add_argument("data", type=Path, help="folder (images + masks/ or metadata.csv) or datalist JSON/CSV")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (e.g. pretrained.pth)")
    defaults = PretrainConfig()
    parser.add_argument("--task", choices=TASKS, default=defaults.task, help="pretext task")
    parser.add_argument("--patch-size", type=int, default=defaults.patch_size)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, dest="learning_rate", default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--target-spacing-mm", type=float)
    parser.add_argument("--pixel-spacing-mm", type=float)
    parser.add_argument("--architecture", choices=tuple(ARCHITECTURES), default=defaults.architecture,
                        help="backbone to pretrain; `plaid train` must use the same one")
    parser.add_argument("--input-filter", choices=INPUT_FILTERS, default=defaults.input_filter,
                        help="fixed front end during pretraining (contrast makes the inserted task learnable "
                             "from random initialisation in a few hundred steps)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Pretrain and print where the weights went."""
    config = PretrainConfig(task=args.task, patch_size=args.patch_size, steps=args.steps,
                            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                            device=args.device, target_spacing_mm=args.target_spacing_mm,
                            pixel_spacing_mm=args.pixel_spacing_mm, architecture=args.architecture,
                            input_filter=args.input_filter)
    summary = pretrain(load_records(args.data), config, args.out, progress=args.progress)
    print(f"pretrained on {summary['tissue_patches']} tissue patches of {summary['images']} normal images "
          f"({summary['seconds']} s); final pretext accuracy {summary['final_accuracy']:.3f}")
    print(f"weights: {summary['weights']}  (use: plaid train DATA --weights {summary['weights']} ...)")
    return 0

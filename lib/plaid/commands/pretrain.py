"""`plaid pretrain`: offline backbone pretraining on unlabelled normal tissue patches (no download)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from plaid.io.datalist import load_records
from plaid.model.input_filter import INPUT_FILTERS
from plaid.model.network import ARCHITECTURES
from plaid.options import argparse_help, option_fields
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
    defaults, described = PretrainConfig(), option_fields(PretrainConfig)

    def add(flag: str, name: str, **kwargs: Any) -> None:
        """A flag setting PretrainConfig field ``name``, with the field's default and help."""
        parser.add_argument(flag, dest=name, default=getattr(defaults, name), help=argparse_help(described[name]),
                            **kwargs)

    add("--task", "task", choices=TASKS)
    add("--patch-size", "patch_size", type=int)
    add("--steps", "steps", type=int)
    add("--batch-size", "batch_size", type=int)
    add("--lr", "learning_rate", type=float)
    add("--seed", "seed", type=int)
    add("--device", "device")
    add("--target-spacing-mm", "target_spacing_mm", type=float)
    add("--pixel-spacing-mm", "pixel_spacing_mm", type=float)
    add("--architecture", "architecture", choices=tuple(ARCHITECTURES))
    add("--input-filter", "input_filter", choices=INPUT_FILTERS)
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

"""Sub-commands of the `plaid` CLI; each module exposes ``register(subparsers)`` setting ``handler``."""

from __future__ import annotations

import argparse
import os

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model.backends import AUTO, RUNTIME_CHOICES, RUNTIME_ENV
from plaid.options import argparse_help, option_fields


def add_run_options(parser: argparse.ArgumentParser, bad_input: str) -> None:
    """Options every model-running command shares: batch size, device, runtime, bad-input policy, progress bar."""
    described = option_fields(InferConfig)
    parser.add_argument("--batch-size", type=int, help=argparse_help(described["batch_size"]))
    parser.add_argument("--device", default="auto", help=argparse_help(described["device"]))
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=os.environ.get(RUNTIME_ENV, AUTO),
                        help=argparse_help(described["runtime"]))
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                        help=f"{bad_input}: skip them with a warning (default) or stop with an error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def predictor_from_args(args: argparse.Namespace) -> PatchPredictor:
    """The predictor for ``--model`` with the run options; it tiles images as its checkpoint was trained."""
    predictor = PatchPredictor(args.model, InferConfig(threshold=args.threshold, batch_size=args.batch_size,
                                                       device=args.device, runtime=args.runtime))
    predictor.model()  # load now: a missing or foreign checkpoint is reported before any image is read
    return predictor

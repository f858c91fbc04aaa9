"""Sub-commands of the `plaid` CLI; each module exposes ``register(subparsers)`` setting ``handler``."""

from __future__ import annotations

import argparse
import os

from plaid.model.backends import AUTO, RUNTIME_CHOICES, RUNTIME_ENV


def add_run_options(parser: argparse.ArgumentParser, bad_input: str) -> None:
    """Options every model-running command shares: batch size, device, runtime, bad-input policy, progress bar."""
    parser.add_argument("--batch-size", type=int, help="patches per forward pass (default: chosen for the device)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=os.environ.get(RUNTIME_ENV, AUTO),
                        help="inference runtime; auto (default, or $PLAID_RUNTIME) times the candidates at load "
                             "and keeps the fastest")
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                        help=f"{bad_input}: skip them with a warning (default) or stop with an error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

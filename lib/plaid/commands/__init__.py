"""Sub-commands of the `plaid` CLI; each module exposes ``register(subparsers)`` setting ``handler``."""

from __future__ import annotations

import argparse


def add_run_options(parser: argparse.ArgumentParser, bad_input: str) -> None:
    """Options every model-running command shares: batch size, device, bad-input policy, progress bar."""
    parser.add_argument("--batch-size", type=int, default=32, help="patches per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                        help=f"{bad_input}: skip them with a warning (default) or stop with an error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

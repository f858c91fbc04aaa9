"""The `plaid` command line: one sub-command per module in `plaid.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from plaid import __version__
from plaid.errors import PlaidError

COMMAND_MODULES = ("synth", "import_data", "train", "crossval", "pretrain", "evaluate", "infer", "ensemble", "labels",
                   "simulate_al")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(prog="plaid", description="Breast microcalcification detection tools.")
    parser.add_argument("--version", action="version", version=f"plaid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"plaid.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"plaid.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plaid` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except PlaidError as exc:
        logging.getLogger("plaid").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`plaid synth`: write synthetic mammograms, their calcification masks and metadata.csv."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plaid.synth.datasets import FORMATS, generate_dataset

logger = logging.getLogger(__name__)


def _formats(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of output formats (png, dcm)."""
    formats = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if not formats or unknown:
        raise argparse.ArgumentTypeError(f"formats must be a comma-separated subset of {','.join(FORMATS)}")
    return formats


def _fraction(text: str) -> float:
    """Parse a number within [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction within [0, 1], got {text}")
    return value


def _positive(text: str) -> int:
    """Parse an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` sub-command."""
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic mammograms with calcification masks",
        description="Write synthetic 12-bit mammograms (PNG and DICOM MG), ground-truth masks in "
        "labels/final/ and metadata.csv: MONAI Label's local datastore layout.",
    )
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--count", type=_positive, default=10, help="number of images, two views per patient")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--height", type=_positive, default=1400, help="image height in pixels")
    parser.add_argument("--width", type=_positive, default=1100, help="image width in pixels")
    parser.add_argument("--formats", type=_formats, default=FORMATS, help="comma-separated, alternating: png,dcm")
    parser.add_argument(
        "--calcified-fraction", type=_fraction, default=0.75, help="share of patients with calcification clusters"
    )
    parser.add_argument("--max-clusters", type=_positive, default=3, help="clusters per calcified image, at most")
    parser.add_argument(
        "--monochrome1-every", type=int, default=3, help="every N-th DICOM is MONOCHROME1 (0: none)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate the data set; returns the exit code."""
    if min(args.height, args.width) < 64:
        logger.error("images must be at least 64x64 pixels, got %dx%d", args.height, args.width)
        return 2
    rows = generate_dataset(
        args.out,
        args.count,
        seed=args.seed,
        height=args.height,
        width=args.width,
        formats=args.formats,
        calcified_fraction=args.calcified_fraction,
        monochrome1_every=args.monochrome1_every,
        max_clusters=args.max_clusters,
        progress=not args.no_progress,
    )
    calcified = sum(1 for row in rows if row["n_clusters"])
    logger.info(
        "%d images (%d with calcifications), masks and metadata.csv in %s", len(rows), calcified, args.out
    )
    return 0

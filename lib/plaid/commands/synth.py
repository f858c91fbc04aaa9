"""`plaid synth`: write synthetic mammograms, masks and metadata.csv."""

from __future__ import annotations

import argparse
from pathlib import Path

from plaid.synth import generate_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` sub-command."""
    parser = subparsers.add_parser("synth", help="generate synthetic mammograms with calcification masks")
    parser.add_argument("out", type=Path, help="output folder (MONAI Label datastore layout)")
    parser.add_argument("--count", type=int, default=10, help="number of images (two views per patient)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=1400)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--formats", default="png,dcm", help="comma-separated, alternating per patient")
    parser.add_argument("--calcified-fraction", type=float, default=0.75, help="share of patients with clusters")
    parser.add_argument("--max-clusters", type=int, default=3, help="clusters per calcified image, at most")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate the data set."""
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    rows = generate_dataset(args.out, args.count, seed=args.seed, height=args.height, width=args.width,
                            formats=formats, calcified_fraction=args.calcified_fraction, max_clusters=args.max_clusters,
                            progress=True)
    print(f"wrote {len(rows)} images, masks and metadata.csv to {args.out}")
    return 0

"""`plaid infer`: mark calcification patches in mammograms (mask, probability map, overlay PNG, JSON summary)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from plaid.commands import add_run_options, predictor_from_args
from plaid.errors import PlaidInputError
from plaid.evaluate.overlays import render_overlay
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import image_id_of
from plaid.io.images import IMAGE_SUFFIXES, Mammogram, read_mammogram
from plaid.io.labels import write_label_image
from plaid.options import argparse_help, option_fields
from plaid.patches.prefetch import prefetched
from plaid.patches.prepared import PreparedImage
from plaid.serialization import write_json

logger = logging.getLogger(__name__)

FORMATS = ("nrrd", "nii.gz", "png", "tif")
SUMMARY_FILE = "summary.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `infer` sub-command."""
    parser = subparsers.add_parser("infer", help="mark calcification patches in mammograms")
    parser.add_argument("images", nargs="+", type=Path, help="mammogram files (or folders of them)")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint, e.g. model/calcification.pt")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--threshold", type=float, help=argparse_help(option_fields(InferConfig)["threshold"]))
    parser.add_argument("--format", choices=FORMATS, default="nrrd", help="mask / probability map format")
    parser.add_argument("--probability", action=argparse.BooleanOptionalAction, default=True,
                        help="also write the per-patch probability map (default: yes)")
    parser.add_argument("--overlay-size", type=int, default=1024, help="longer side of the overlay PNG, pixels")
    add_run_options(parser, "unreadable images")
    parser.set_defaults(handler=run)


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the mammogram files directly inside them (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


def read_prepared(path: Path, predictor: PatchPredictor) -> tuple[Mammogram, PreparedImage]:
    """Read one image and prepare it as the predictor scores it (runs ahead, in a background thread)."""
    image = read_mammogram(path, min_size=predictor.patch_settings().patch_size)
    return image, predictor.prepare(image.pixels, image.meta)


def infer_one(path: Path, image: Mammogram, prepared: PreparedImage, predictor: PatchPredictor, out_dir: Path,
              fmt: str, probability: bool, overlay_size: int) -> dict[str, Any]:
    """Predict one prepared image and write its outputs; returns its entry of summary.json."""
    prediction = predictor.predict_prepared(prepared)
    image_id = image_id_of(path)
    reference = path if fmt in ("nrrd", "nii.gz") else None
    files = {"mask": str(write_label_image(out_dir / f"{image_id}_mask.{fmt}", prediction.label_mask(), reference))}
    if probability:
        files["probability"] = str(write_label_image(out_dir / f"{image_id}_probability.{fmt}",
                                                     prediction.probability_map(), reference))
    summary = prediction.summary()
    boxes = [entry["box"] for entry in summary["positives"]]
    files["overlay"] = str(render_overlay(
        image.pixels, boxes, out_dir / f"{image_id}_overlay.png", max_side=overlay_size,
        title=f"{image_id}: {summary['patches_positive']} of {summary['patches_scored']} patches positive "
              f"(threshold {summary['threshold']:.3f})",
    ))
    return {"image": str(path), "image_id": image_id, "shape": list(image.shape), "files": files, **summary}


def run(args: argparse.Namespace) -> int:
    """Run the predictor over every image; bad images are skipped (listed in summary.json) or stop the run."""
    predictor = predictor_from_args(args)
    paths = expand_inputs(args.images)
    if not paths:
        raise PlaidInputError("no image to process")
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    iterator: Any = prefetched(paths, lambda path: read_prepared(path, predictor))
    if args.progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="inferring", unit="image", total=len(paths))
    for path, ready in iterator:
        try:
            image, prepared = ready.result()
            results.append(infer_one(path, image, prepared, predictor, args.out, args.format, args.probability,
                                     args.overlay_size))
        except PlaidInputError as exc:
            if args.on_error == "stop":
                raise
            logger.warning("skipping %s", exc)
            problems.append({"path": exc.path or str(path), "message": str(exc)})
    summary_path = write_json(args.out / SUMMARY_FILE, {
        "model": str(args.model), "threshold": predictor.threshold(), "images": results, "problems": problems,
    })
    for result in results:
        print(f"{result['image_id']}: {result['patches_positive']} of {result['patches_scored']} patches positive "
              f"-> {result['files']['mask']}")
    if problems:
        print(f"skipped {len(problems)} files:")
        for problem in problems:
            print(f"  {problem['message']}")
    print(f"summary: {summary_path}")
    return 0 if results else 1

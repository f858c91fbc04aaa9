"""`make demo`: serve the sample data with MONAI Label on 127.0.0.1, train briefly if no model exists,
run one inference through MONAI Label's client, and write the mask plus an overlay PNG.

The served folder (.demo/studies) is the sample data, its last two films unlabelled, plus five synthetic
women without calcification the brief training holds out to choose its threshold on
(`plaid_dev.demo_data`); `make pacs-demo` trains on the same folder with the same recipe.

The server keeps running afterwards (point 3D Slicer's MONAILabel module at the printed URL) until
Ctrl-C, unless --exit is given.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from monailabel.client import MONAILabelClient

from plaid.evaluate.overlays import render_overlay
from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask
from plaid_dev.demo_data import operating_point_line, prepare_demo_studies
from plaid_dev.serving import DEMO_RECIPE, REPO_ROOT, start_label_server


def wait_for_training(client: MONAILabelClient, poll_s: float = 5.0) -> dict:
    """Block until the running training task ends; print a line now and then."""
    started = time.monotonic()
    while True:
        status = client.train_status()
        if status.get("status") in ("DONE", "ERROR"):
            return status
        print(f"  training... {time.monotonic() - started:.0f} s", flush=True)
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-data", type=Path, default=REPO_ROOT / "sample-data")
    parser.add_argument("--studies", type=Path, default=REPO_ROOT / ".demo" / "studies")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "model")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-output")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--recipe", type=Path, default=DEMO_RECIPE,
                        help="training settings of the brief training (a recipe file, see recipes/)")
    parser.add_argument("--train-epochs", type=int, help="brief training's epochs (default: the recipe's)")
    parser.add_argument("--exit", action="store_true", help="stop the server after the inference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    prepare_demo_studies(args.sample_data, args.studies)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_label_server(
        args.studies, conf={"model_dir": str(args.model_dir), "recipe": str(args.recipe)}, port=args.port,
        log_path=args.out / "monailabel.log",
    )
    try:
        client = MONAILabelClient(server.url, tmpdir=str(args.out))
        if not (args.model_dir / "calcification.pt").is_file():
            request = {} if args.train_epochs is None else {"epochs": args.train_epochs}
            print(f"No model in {args.model_dir}: brief training ({args.recipe.name}, {request or 'its epochs'}) on "
                  "the sample data through MONAI Label's trainer...", flush=True)
            client.train_start("calcification", request)
            status = wait_for_training(client)
            if status.get("status") != "DONE":
                print(f"Training failed: {status}. See {server.log_path}", file=sys.stderr)
                return 1
        print(operating_point_line(args.model_dir / "calcification.pt")[0], flush=True)
        objects = client.datastore()["objects"]
        unlabeled = sorted(k for k, v in objects.items() if "final" not in v.get("labels", {}))
        image_id = (unlabeled or sorted(objects))[0]
        image_path = next(args.studies.glob(f"{image_id}.*"))
        mask_file, result = client.infer("calcification", image_id, {"result_extension": ".nrrd"})
        mask_out = args.out / f"{image_id}_calcification.nrrd"
        shutil.move(mask_file, mask_out)
        image = read_mammogram(image_path)
        truth_file = next((args.sample_data / "labels" / "final").glob(f"{image_id}.*"), None)
        truth = read_label_mask(truth_file, image.shape) if truth_file else None
        boxes = [p["box"] for p in result["positives"]]
        overlay = render_overlay(image.pixels, boxes, args.out / f"{image_id}_overlay.png", ground_truth=truth,
                                 title=f"{image_id}: {result['patches_positive']} positive patches")
        positives = np.asarray([p["probability"] for p in result["positives"]])
        print(f"\nInference on {image_id}: {result['patches_positive']} of {result['patches_scored']} tissue patches "
              f"positive (threshold {result['threshold']:.3f}, image score {result['image_score']:.3f}, "
              f"{result['timings']['total_s']:.1f} s)")
        if positives.size:
            print(f"  highest patch probability {positives.max():.3f}")
        print(f"  mask:    {mask_out}\n  overlay: {overlay}")
        print(f"\nMONAI Label server: {server.url}  (3D Slicer: MONAILabel module -> server {server.url})")
        if args.exit:
            return 0
        print("Serving until Ctrl-C...", flush=True)
        while server.healthy():
            time.sleep(5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

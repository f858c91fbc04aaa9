"""One-GPU check: prints one JSON object with the raw model (inference and training), the served path on
full-size synthetic mammograms, and two epochs of PLAID's training loop. Sized to finish within 8 minutes
on one GPU; tiny settings run it on a CPU too:

    python benchmarks/gpu_check.py                      # on the GPU machine
    python benchmarks/gpu_check.py --height 672 --width 560 --images 2 --raw-steps 1 --device cpu
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from measure import (
    prepared_training_images,
    raw_inference,
    raw_train_steps,
    served_pipeline,
    synthetic_cases,
    timed,
    training_loop,
)

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model.checkpoint import save_checkpoint
from plaid.model.device import select_device
from plaid.model.network import build_model
from plaid.patches.prepared import preparation_processes, prepare_file
from plaid.train.config import TrainConfig
from plaid.train.loop import PatchTrainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the full-size check)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=4096)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--images", type=int, default=8, help="synthetic images for the served path and training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--raw-steps", type=int, default=20, help="timed batches of the raw training step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--batch-size", type=int, help="inference batch (default: chosen for the device)")
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="CPU threads reading and tissue-masking images ahead of the model")
    parser.add_argument("--threads", dest="processes", action="store_false",
                        help="prepare images in threads rather than spawned processes")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the training loop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every measurement, print the JSON object and return it."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    device = select_device(args.device)
    started = time.perf_counter()
    out: dict[str, Any] = {"device": str(device), "image": f"{args.height}x{args.width}", "images": args.images,
                           "cpu_cores": os.cpu_count(), "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            parts = list(pool.map(lambda n: synthetic_cases(tmp_dir / f"case{n}", 1, args.height, args.width,
                                                            seed=5 + n), range(args.images)))
        records = [part[0] for part in parts]
        out["synth_s"] = round(time.perf_counter() - started, 1)

        torch.manual_seed(0)
        checkpoint = save_checkpoint(tmp_dir / "model.pt", build_model(pretrained=False), threshold=0.5)
        predictor = PatchPredictor(checkpoint, InferConfig(batch_size=args.batch_size, device=str(device),
                                                           runtime=args.runtime))
        load_s, runtime = timed(predictor.runtime)
        out.update(runtime=runtime.name, runtime_timings=runtime.notes.get("timings", ""),
                   runtime_choice_s=round(load_s, 1), infer_batch_size=predictor.batch_size)

        served_pipeline([records[0].image], predictor, tmp_dir / "warm", workers=1)
        executor = preparation_processes(args.workers) if args.processes else None
        if executor is not None:  # start every worker process (imports included) before timing, as a server would
            list(executor.map(functools.partial(prepare_file, settings=predictor.patch_settings()),
                              [records[0].image] * args.workers))
        served_s, scored = timed(served_pipeline, [r.image for r in records], predictor, tmp_dir / "out",
                                 workers=args.workers, executor=executor)
        if executor is not None:
            executor.shutdown()
        raw_s = raw_inference(runtime, scored, predictor.batch_size)
        out["served"] = {"seconds": round(served_s, 2), "images_per_s": round(len(records) / served_s, 2),
                         "patches_scored": scored, "patches_per_s": round(scored / served_s, 1),
                         "prepare_workers": args.workers,
                         "prepare_in": "processes" if args.processes else "threads"}
        out["raw_inference"] = {"seconds": round(raw_s, 2), "patches_per_s": round(scored / raw_s, 1)}

        config = TrainConfig(batch_size=args.train_batch_size, epochs=args.epochs, num_workers=args.num_workers,
                             pretrained=False, device=str(device), val_fraction=0.25)
        images = prepared_training_images(records, config.patch_settings)
        raw_train = raw_train_steps(config, device, args.raw_steps)
        loop = training_loop(config, images, device, args.raw_steps)
        out["raw_training"] = {"patches_per_s": round(raw_train, 1), "batch_size": config.batch_size}
        out["training_loop"] = {"patches_per_s": round(loop, 1), "vs_raw": round(loop / raw_train, 3),
                                "num_workers": config.num_workers}

        split = max(1, len(images) // 4)
        fit_s, result = timed(PatchTrainer(config, tmp_dir / "train", progress=False).fit, images[split:],
                              images[:split], resume=False)
        out["fit"] = {"epochs": len(result.history), "seconds": round(fit_s, 1),
                      "epoch_seconds": [round(stats.seconds, 2) for stats in result.history],
                      "train_patches_per_epoch": [stats.train_patches for stats in result.history],
                      "patches_per_s_incl_validation": [round(stats.train_patches / stats.seconds, 1)
                                              for stats in result.history]}
    out["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

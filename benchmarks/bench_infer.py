"""`make bench`: one run, one full-size synthetic mammogram, four measurements and their ratios.

1. the honest naive pipeline: read, normalise, every patch (background too) sliced from a padded array,
   batch 1, torch fp32;
2. PLAID's path as served: read, tissue mask, tissue patches in batches on the runtime chosen at model
   load, NRRD mask written;
3. that runtime alone on a random batch of as many patches as (2) scored;
4. the training loop (balanced sampling, the trainer's batch loader and augmentation, its epoch code)
   against the bare training step on one random batch, in patches/s;
5. ceilings on one core (one thread): the full preparation of the 16-bit PNG over its bare decode
   (``prepare_vs_decode``), the served path with a model that answers at once
   (``null_model_images_per_s_per_core``), the training loop's batches with the step removed
   (``data_path_patches_per_s_per_core``, and ``data_path_vs_raw_step``) and pretext patches with pasted
   clusters at 64 px (``pretext_patches_per_s_per_core``).

    python benchmarks/bench_infer.py [--height 4096 --width 3328 --runtime auto --train-steps 3 --json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from measure import (
    data_path_patches_per_s,
    naive_pipeline,
    null_model_images_per_s,
    prepare_vs_decode,
    prepared_training_images,
    pretext_patches_per_s,
    raw_inference,
    raw_train_steps,
    served_pipeline,
    synthetic_cases,
    timed,
    training_loop,
)

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model.backends import RUNTIME_CHOICES
from plaid.model.checkpoint import save_checkpoint
from plaid.model.device import select_device
from plaid.model.network import build_model
from plaid.patches.prepared import PatchSettings
from plaid.train.config import TrainConfig

DATA_PATH_BATCHES = 8
PRETEXT_BATCHES = 10


def main() -> None:
    """Run the four measurements and print figures and ratios (and a JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=4096)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help="served-path runtime")
    parser.add_argument("--batch-size", type=int, help="served-path batch (default: chosen for the device)")
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=3, help="timed training batches (0: skip training)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the training loop")
    parser.add_argument("--skip-naive", action="store_true", help="skip the (slow) naive pipeline")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = select_device("auto")
    figures: dict[str, object] = {
        "image": f"{args.height}x{args.width}", "device": str(device),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        record = synthetic_cases(tmp_dir, 1, args.height, args.width)[0]
        torch.manual_seed(0)
        checkpoint = save_checkpoint(tmp_dir / "model.pt", build_model(pretrained=False), threshold=0.5)
        predictor = PatchPredictor(checkpoint, InferConfig(batch_size=args.batch_size, runtime=args.runtime))
        load_s, runtime = timed(predictor.runtime)  # model load + runtime choice, as a server does once
        figures.update(runtime=runtime.name, runtime_choice_s=round(load_s, 1),
                       runtime_timings=runtime.notes.get("timings", ""), batch_size=predictor.batch_size)
        served_pipeline([record.image], predictor, tmp_dir / "warm")  # warm caches (ITK writer, allocator)
        served_s, scored = timed(served_pipeline, [record.image], predictor, tmp_dir / "out")
        raw_s = raw_inference(runtime, scored, predictor.batch_size)
        figures.update(served_s=round(served_s, 2), patches_scored=scored, raw_model_s=round(raw_s, 2),
                       served_vs_raw=round(raw_s / served_s, 3))
        logging.info("served path %.2f s, raw model %.2f s", served_s, raw_s)
        ceilings = prepare_vs_decode(record.image, predictor.patch_settings())
        figures.update(decode_s=round(ceilings["decode_s"], 3), prepare_s=round(ceilings["prepare_s"], 3),
                       prepare_vs_decode=round(ceilings["ratio"], 3),
                       null_model_images_per_s_per_core=round(
                           null_model_images_per_s(record.image, predictor, tmp_dir / "null"), 3))
        if not args.skip_naive:
            model, _ = predictor.model()
            naive_s, total = timed(naive_pipeline, record.image, model)
            logging.info("naive pipeline %.2f s", naive_s)
            figures.update(naive_s=round(naive_s, 2), patches_total=total,
                           speedup_vs_naive=round(naive_s / served_s, 2))
        if args.train_steps > 0:
            config = TrainConfig(batch_size=args.train_batch_size, num_workers=args.num_workers, pretrained=False)
            images = prepared_training_images([record], config.patch_settings)
            raw_train = raw_train_steps(config, device, args.train_steps)
            started = time.perf_counter()
            loop = training_loop(config, images, device, args.train_steps)
            figures.update(train_raw_patches_per_s=round(raw_train, 2), train_loop_patches_per_s=round(loop, 2),
                           train_loop_vs_raw=round(loop / raw_train, 3),
                           train_loop_wall_s=round(time.perf_counter() - started, 1))
        else:
            images = prepared_training_images([record], TrainConfig().patch_settings)
            raw_train = raw_train_steps(TrainConfig(batch_size=args.train_batch_size, pretrained=False), device, 1)
            figures.update(train_raw_patches_per_s=round(raw_train, 2))
        one_core = TrainConfig(batch_size=args.train_batch_size, num_workers=0, pretrained=False)
        data_path = data_path_patches_per_s(one_core, images, device, DATA_PATH_BATCHES)
        pretext_images = prepared_training_images([record], PatchSettings(patch_size=64))
        figures.update(data_path_patches_per_s_per_core=round(data_path, 1),
                       data_path_vs_raw_step=round(data_path / raw_train, 1),
                       pretext_patches_per_s_per_core=round(
                           pretext_patches_per_s(pretext_images, device, PRETEXT_BATCHES), 1))
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


def _print(figures: dict[str, object]) -> None:
    print(f"image {figures['image']}, device {figures['device']}, {figures['cores']} cores, "
          f"torch threads {figures['torch_threads']}")
    print(f"runtime          : {figures['runtime']} (chosen in {figures['runtime_choice_s']} s; "
          f"patches/s {figures['runtime_timings'] or 'not timed: named'}), batch {figures['batch_size']}")
    print(f"PLAID served path: {figures['served_s']:8.2f} s/image ({figures['patches_scored']} tissue patches)")
    print(f"raw model        : {figures['raw_model_s']:8.2f} s for as many random patches "
          f"(served path at {figures['served_vs_raw']:.0%} of the raw model's speed)")
    if "naive_s" in figures:
        print(f"naive pipeline   : {figures['naive_s']:8.2f} s/image ({figures['patches_total']} patches, batch 1, "
              f"fp32)")
        print(f"speed-up         : {figures['speedup_vs_naive']:8.2f}x served vs naive")
    if "train_raw_patches_per_s" in figures:
        print(f"training         : loop {figures['train_loop_patches_per_s']} patches/s vs raw step "
              f"{figures['train_raw_patches_per_s']} patches/s ({figures['train_loop_vs_raw']:.0%})")
    print(f"one core         : prepare/decode {figures['prepare_vs_decode']} ({figures['prepare_s']} s vs "
          f"{figures['decode_s']} s), null-model served {figures['null_model_images_per_s_per_core']} images/s, "
          f"data path {figures['data_path_patches_per_s_per_core']} patches/s "
          f"({figures['data_path_vs_raw_step']}x the raw step), pretext {figures['pretext_patches_per_s_per_core']} "
          "patches/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Seconds per full-size synthetic mammogram: PLAID's infer path against a naive baseline, same run.

PLAID's path (what the MONAI Label infer task runs): read the file, tissue mask, batched patches,
channels_last, bf16/fp16 autocast where the device supports it, write the NRRD label.
Baseline: fp32, every patch including background, one patch per forward pass.

    python benchmarks/bench_infer.py [--height 4096 --width 3328 --repeats 1]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from plaid.image_io import read_mammogram
from plaid.inference import InferConfig, PatchPredictor, score_patches
from plaid.label_io import write_label_image
from plaid.model import build_model, save_checkpoint
from plaid.patch_data import to_unit_uint16
from plaid.runtime import cpu_supports_bf16, select_device
from plaid.synth import synthesize_case, write_case
from plaid.tiling import grid_for


def plaid_path(image_file: Path, predictor: PatchPredictor, out_dir: Path) -> tuple[float, int]:
    """Seconds for read + predict + write, and the number of patches scored."""
    started = time.perf_counter()
    image = read_mammogram(image_file)
    prediction = predictor.predict(image.pixels)
    write_label_image(out_dir / "mask.nrrd", prediction.label_mask(), reference=image_file)
    return time.perf_counter() - started, int(prediction.scored.sum())


def naive_path(image_file: Path, predictor: PatchPredictor) -> tuple[float, int]:
    """Seconds for read + every patch, one at a time, fp32."""
    started = time.perf_counter()
    image = read_mammogram(image_file)
    unit = to_unit_uint16(image.pixels)
    grid = grid_for(unit)
    model, _ = predictor.model()
    model = model.to(memory_format=torch.contiguous_format)
    config = InferConfig(batch_size=1, amp=False, channels_last=False, skip_background=False)
    score_patches(model, unit, grid, np.arange(len(grid)), config, predictor.device)
    return time.perf_counter() - started, len(grid)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=4096)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = select_device("auto")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        case = synthesize_case(height=args.height, width=args.width, seed=5, view="MLO", laterality="L", n_clusters=2)
        image_file = tmp_dir / "bench.png"
        write_case(case, tmp_dir, "bench", fmt="png")
        checkpoint = save_checkpoint(tmp_dir / "model.pt", build_model(pretrained=False), threshold=0.5)
        predictor = PatchPredictor(checkpoint, InferConfig(batch_size=args.batch_size))
        # Warm up what a running server has already loaded: the model and ITK's writers.
        predictor.predict(np.asarray(case.pixels[:448, :448], dtype=np.float32))
        write_label_image(tmp_dir / "warm.nrrd", np.zeros((8, 8), dtype=np.uint8), reference=image_file)
        plaid_times, naive_times = [], []
        for _ in range(args.repeats):
            seconds, scored = plaid_path(image_file, predictor, tmp_dir)
            plaid_times.append(seconds)
            seconds, total = naive_path(image_file, predictor)
            naive_times.append(seconds)
    plaid_s, naive_s = min(plaid_times), min(naive_times)
    print(f"image {args.height}x{args.width}, device {device}, torch threads {torch.get_num_threads()}, "
          f"cpu bf16 {cpu_supports_bf16()}")
    print(f"PLAID infer path : {plaid_s:8.2f} s/image  ({scored} tissue patches, batch {args.batch_size}, "
          f"{scored / plaid_s:.1f} patches/s)")
    print(f"naive baseline   : {naive_s:8.2f} s/image  ({total} patches, batch 1, fp32, "
          f"{total / naive_s:.1f} patches/s)")
    print(f"speed-up         : {naive_s / plaid_s:8.2f}x")


if __name__ == "__main__":
    main()

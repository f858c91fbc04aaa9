"""One-GPU check: prints one JSON object with served mammograms/s, the raw model's patches/s in bf16 and fp32,
the training loop against the raw training step, pretext steps/s, and one epoch of PLAID's training loop.
Sized to finish within 5 minutes on one GPU; ``--smoke`` runs every part on a CPU with tiny sizes:

    python benchmarks/gpu_check.py                      # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --smoke              # any machine, a few minutes on 2 cores

Every timing warms up first and synchronises the device before reading the clock; the raw model and the
training step run on one fixed batch shape (``cudnn.benchmark`` on), fp32 with TF32 allowed, channels_last.
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
    _sync,
    prepared_training_images,
    raw_train_steps,
    served_pipeline,
    synthetic_cases,
    timed,
    training_loop,
)

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model.checkpoint import save_checkpoint
from plaid.model.device import cpu_supports_bf16, select_device
from plaid.model.network import PatchClassifier, build_model
from plaid.patches.prefetch import preparation_processes
from plaid.patches.prepared import PatchSettings, prepare_file
from plaid.train.config import TrainConfig
from plaid.train.loop import PatchTrainer
from plaid.train.pretrain import PretrainConfig, run_pretext, tissue_rows

WARM_UP = 3
SMOKE = ["--height", "672", "--width", "560", "--images", "2", "--epochs", "1", "--raw-steps", "1",
         "--device", "cpu", "--runtime", "torch-fp32", "--batch-size", "8", "--raw-batch-size", "2",
         "--train-batch-size", "4", "--workers", "1", "--num-workers", "0", "--pretext-steps", "2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the full-size check on one GPU)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that every part runs")
    parser.add_argument("--height", type=int, default=4096)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--images", type=int, default=6, help="synthetic images for the served path and training")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--raw-steps", type=int, default=20, help="timed batches of the raw model and training step")
    parser.add_argument("--raw-batch-size", type=int, default=256, help="batch of the raw model timings")
    parser.add_argument("--pretext-steps", type=int, default=200, help="timed pretext steps (ResNet50, 64 px)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--batch-size", type=int, help="inference batch (default: chosen for the device)")
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes (one thread each) reading and tissue-masking images ahead of the model")
    parser.add_argument("--threads", dest="processes", action="store_false",
                        help="prepare images in threads rather than spawned processes")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the training loop")
    argv = list(sys.argv[1:] if argv is None else argv)
    return parser.parse_args([*SMOKE, *argv] if "--smoke" in argv else argv)


def raw_model_patches_per_s(model: torch.nn.Module, device: torch.device, batch_size: int, steps: int,
                            bf16: bool) -> float:
    """Patches/s of the classifier alone on one batch kept on the device (channels_last; bf16 autocast or fp32
    with TF32 allowed), after `WARM_UP` batches, synchronised."""
    net = model.eval().to(device, memory_format=torch.channels_last)
    batch = torch.rand(batch_size, 1, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        for _ in range(WARM_UP):
            net(batch)
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            net(batch)
        _sync(device)
    return steps * batch_size / (time.perf_counter() - started)


def pretext_steps_per_s(images: list, device: torch.device, steps: int, batch_size: int) -> float:
    """Steps/s of the ``inserted`` pretext (ResNet50 from random weights, 64 px, batches made on the device)."""
    rows = tissue_rows(images)
    model = PatchClassifier(frozen_layers=0).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    warm = PretrainConfig(patch_size=64, steps=WARM_UP, batch_size=batch_size, device=str(device))
    run_pretext(model, images, rows, warm, device)
    _sync(device)
    config = PretrainConfig(patch_size=64, steps=steps, batch_size=batch_size, device=str(device), seed=1)
    started = time.perf_counter()
    run_pretext(model, images, rows, config, device)
    _sync(device)
    return steps / (time.perf_counter() - started)


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
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
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
        out["served"] = {"seconds": round(served_s, 2), "mammograms_per_s": round(len(records) / served_s, 2),
                         "patches_scored": scored, "patches_per_s": round(scored / served_s, 1),
                         "prepare_workers": args.workers,
                         "prepare_in": "processes" if args.processes else "threads"}
        model, _ = predictor.model()
        native_bf16 = device.type == "cuda" or cpu_supports_bf16()  # emulated bf16 is slow and says nothing
        out["raw_model"] = {
            "batch_size": args.raw_batch_size,
            "bf16_patches_per_s": round(raw_model_patches_per_s(model, device, args.raw_batch_size, args.raw_steps,
                                                                True), 1) if native_bf16 else None,
            "fp32_tf32_patches_per_s": round(raw_model_patches_per_s(model, device, args.raw_batch_size,
                                                                     args.raw_steps, False), 1),
        }

        config = TrainConfig(batch_size=args.train_batch_size, epochs=args.epochs, num_workers=args.num_workers,
                             pretrained=False, device=str(device), val_fraction=0.25)
        images = prepared_training_images(records, config.patch_settings)
        raw_train = raw_train_steps(config, device, args.raw_steps)
        loop = training_loop(config, images, device, args.raw_steps)
        out["raw_training"] = {"patches_per_s": round(raw_train, 1), "batch_size": config.batch_size}
        out["training_loop"] = {"patches_per_s": round(loop, 1), "vs_raw": round(loop / raw_train, 3),
                                "num_workers": config.num_workers}

        pretext_images = prepared_training_images(records, PatchSettings(patch_size=64))
        out["pretext"] = {"steps_per_s": round(pretext_steps_per_s(pretext_images, device, args.pretext_steps,
                                                                   args.train_batch_size), 2),
                          "batch_size": args.train_batch_size, "patch_size": 64}

        split = max(1, len(images) // 4)
        fit_s, result = timed(PatchTrainer(config, tmp_dir / "train", progress=False).fit, images[split:],
                              images[:split], resume=False)
        out["fit"] = {"epochs": len(result.history), "seconds": round(fit_s, 1),
                      "epoch_seconds": [round(stats.seconds, 2) for stats in result.history],
                      "train_patches_per_epoch": [stats.train_patches for stats in result.history]}
    out["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

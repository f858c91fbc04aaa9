"""Measurements shared by `bench_infer.py` (CPU, `make bench`) and `gpu_check.py` (one GPU).

Every function times real PLAID code on synthetic full-size mammograms; none asserts a target.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from threadpoolctl import threadpool_limits
from torch import nn

from plaid.infer.predictor import PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.io.images import normalise_intensity, read_mammogram
from plaid.io.labels import write_label_image
from plaid.model.backends import Runtime
from plaid.model.device import autocast_for
from plaid.patches.grid import PatchGrid
from plaid.patches.prefetch import prefetched
from plaid.patches.prepared import PatchSettings, PreparedImage, patch_index_for, prepare_file, prepare_image
from plaid.patches.sampling import BalancedSampler
from plaid.synth.datasets import write_case
from plaid.synth.generator import synthesize_case
from plaid.train.batches import batch_on_device
from plaid.train.config import TrainConfig
from plaid.train.loop import PatchTrainer
from plaid.train.pretrain import PretrainConfig, pretext_batch, tissue_rows


def synthetic_cases(out_dir: Path, count: int, height: int, width: int, seed: int = 5) -> list[CaseRecord]:
    """``count`` full-size synthetic mammograms (16-bit PNG) with calcification masks, as labelled records."""
    records = []
    for number in range(count):
        case = synthesize_case(height=height, width=width, seed=seed + number, view="MLO" if number % 2 else "CC",
                               laterality="LR"[number % 2], n_clusters=2)
        image_id = f"bench{number:03d}"
        write_case(case, out_dir, image_id, fmt="png")
        records.append(CaseRecord(image=str(out_dir / f"{image_id}.png"),
                                  label=str(out_dir / "labels" / "final" / f"{image_id}.png")))
    return records


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


@torch.inference_mode()
def naive_pipeline(path: str | Path, model: nn.Module, patch_size: int = 224) -> int:
    """The honest naive pipeline: read, normalise, pad once, then every patch (background too) sliced
    from the padded array and run alone through the fp32 model. Returns the number of patches."""
    pixels = normalise_intensity(read_mammogram(path).pixels)
    grid = PatchGrid(*pixels.shape, patch_size=patch_size)
    padded = np.zeros(grid.padded_shape(), dtype=np.float32)
    padded[: pixels.shape[0], : pixels.shape[1]] = pixels
    model = model.to(memory_format=torch.contiguous_format).eval()
    for top, left in grid.origins():
        patch = torch.from_numpy(padded[top : top + patch_size, left : left + patch_size].copy())
        torch.sigmoid(model(patch[None, None]))
    return len(grid)


def served_pipeline(paths: Sequence[str | Path], predictor: PatchPredictor, out_dir: Path,
                    workers: int = 1, executor: Executor | None = None) -> int:
    """PLAID as served, over a sequence of files: read and prepare (tissue mask, grid) in ``workers``
    background threads (or ``executor``'s processes) ahead of the model, score tissue patches in batches on the chosen
    runtime, write the NRRD mask (in the background too when ``workers`` > 1). Returns the patches scored."""
    out_dir.mkdir(parents=True, exist_ok=True)
    read_and_prepare = functools.partial(prepare_file, settings=predictor.patch_settings())

    def write(path: str | Path, mask: np.ndarray) -> None:
        write_label_image(out_dir / f"{Path(path).stem}_mask.nrrd", mask, reference=path)

    scored = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as writers:
        pending = []
        for path, ready in prefetched(list(paths), read_and_prepare, workers=workers, lookahead=2 * workers,
                                      executor=executor):
            prepared = ready.result()
            prediction = predictor.predict_prepared(prepared)
            scored += int(prediction.scored.sum())
            if workers > 1:
                pending.append(writers.submit(write, path, prediction.label_mask()))
            else:
                write(path, prediction.label_mask())
        for future in pending:
            future.result()
    return scored


def raw_inference(runtime: Runtime, patches: int, batch_size: int, patch_size: int = 224) -> float:
    """Seconds for the runtime alone on ``patches`` random patches in batches (one warm-up batch first)."""
    batch = np.random.default_rng(0).random((batch_size, 1, patch_size, patch_size), dtype=np.float32)
    runtime(batch)
    started = time.perf_counter()
    for start in range(0, patches, batch_size):
        runtime(batch[: min(batch_size, patches - start)])
    return time.perf_counter() - started


def _train_parts(config: TrainConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    torch.manual_seed(0)
    model = PatchTrainer(config, ".")._initial_model().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    return model, optimizer, nn.BCEWithLogitsLoss()


def raw_train_steps(config: TrainConfig, device: torch.device, steps: int, patch_size: int = 224) -> float:
    """Patches/s of the bare training step (forward, loss, backward, Adam) on one random batch kept on the device."""
    model, optimizer, loss_fn = _train_parts(config, device)
    model.train()
    patches = torch.rand(config.batch_size, 1, patch_size, patch_size, device=device)
    patches = patches.contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(config.batch_size, device=device) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, config.amp):
            logits = model(patches)
        loss_fn(logits.float(), labels).backward()
        optimizer.step()

    step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * config.batch_size / (time.perf_counter() - started)


def training_loop(config: TrainConfig, images: Sequence[PreparedImage], device: torch.device, steps: int) -> float:
    """Patches/s of PLAID's training loop (balanced sampling, PatchDataset, DataLoader, augmentation, the
    trainer's epoch code) over ``steps`` batches, after a one-batch warm-up."""
    trainer = PatchTrainer(config, ".", progress=False)
    model, optimizer, loss_fn = _train_parts(config, device)
    index = BalancedSampler(patch_index_for(images), seed=0).epoch_index(0)
    rows = np.arange(config.batch_size * steps) % len(index)  # whole batches: what the loop trains is counted
    warm = trainer._data_loader(images, index.subset(rows[: config.batch_size]), shuffle=True, seed=0)
    trainer._train_epoch(model, optimizer, loss_fn, warm, 0)
    loader = trainer._data_loader(images, index.subset(rows), shuffle=True, seed=1)
    _sync(device)
    started = time.perf_counter()
    trainer._train_epoch(model, optimizer, loss_fn, loader, 0)
    _sync(device)
    return len(rows) / (time.perf_counter() - started)


def prepared_training_images(records: Sequence[CaseRecord], settings: PatchSettings) -> list[PreparedImage]:
    """The records prepared with their labels, as training holds them."""
    return [prepare_image(record, settings) for record in records]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Run the block on one thread (numpy/scipy BLAS and OpenMP pools, torch intra-op), as one core would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def best_of(repeats: int, function: Callable[[], Any]) -> float:
    """The shortest of ``repeats`` timed calls, in seconds."""
    return min(timed(function)[0] for _ in range(repeats))


def decode_png(path: str | Path) -> np.ndarray:
    """The bare decode PLAID's reader does for a PNG: Pillow, straight to a numpy array."""
    with Image.open(path) as handle:
        handle.load()
        return np.asarray(handle)


def prepare_vs_decode(path: str | Path, settings: PatchSettings, repeats: int = 3) -> dict[str, float]:
    """One core: seconds of the bare decode and of the full preparation (read, tissue flags, normalised padded
    image) of the same file, best of ``repeats`` each, alternating so load changes hit both alike."""
    with one_core():
        prepare_file(path, settings)  # first-call costs (imports, cached resize matrices) before timing
        decode_s, prepare_s = [], []
        for _ in range(repeats):
            decode_s.append(timed(decode_png, path)[0])
            prepare_s.append(timed(prepare_file, path, settings)[0])
    return {"decode_s": min(decode_s), "prepare_s": min(prepare_s), "ratio": min(prepare_s) / min(decode_s)}


def null_runtime() -> Runtime:
    """A runtime that answers at once (probability 0 for every patch): what remains is PLAID's own path."""
    return Runtime(name="null", run=lambda batch: np.zeros(len(batch), dtype=np.float32), takes_uint16=True)


def null_model_images_per_s(path: str | Path, predictor: PatchPredictor, out_dir: Path, repeats: int = 3) -> float:
    """Images/s on one core of the served path (read, prepare, gather tissue patches in batches, NRRD mask)
    with a model that answers at once."""
    predictor.runtime()  # load the checkpoint (settings, threshold) once, as a server does
    served = predictor._runtime
    predictor._runtime = null_runtime()
    try:
        with one_core():
            served_pipeline([path], predictor, out_dir)
            return 1.0 / best_of(repeats, lambda: served_pipeline([path], predictor, out_dir))
    finally:
        predictor._runtime = served


def data_path_patches_per_s(config: TrainConfig, images: Sequence[PreparedImage], device: torch.device,
                            batches: int) -> float:
    """Patches/s on one core of the training loop's batches with the step removed: the epoch's balanced rows,
    the trainer's loader (gather, augmentation), each batch moved as the loop moves it (`batch_on_device`)."""
    trainer = PatchTrainer(config, ".", progress=False)
    index = BalancedSampler(patch_index_for(images), seed=0).epoch_index(0)
    rows = np.arange(config.batch_size * batches) % len(index)
    with one_core():
        for batch in trainer._data_loader(images, index.subset(rows[: config.batch_size]), True, 0):
            batch_on_device(batch, device)
        loader = trainer._data_loader(images, index.subset(rows), shuffle=True, seed=1)
        _sync(device)
        started = time.perf_counter()
        seen = sum(len(batch_on_device(batch, device)[1]) for batch in loader)
        _sync(device)
    return seen / (time.perf_counter() - started)


def pretext_patches_per_s(images: Sequence[PreparedImage], device: torch.device, batches: int,
                          batch_size: int = 32) -> float:
    """Pretext patches (``inserted``: flipped, turned, half with a pasted cluster) made per second on one core."""
    rows = tissue_rows(images)
    config = PretrainConfig(patch_size=images[0].grid.patch_size, batch_size=batch_size)
    rng = np.random.default_rng(0)
    with one_core():
        pretext_batch(images, rows, config, rng, device)
        _sync(device)
        started = time.perf_counter()
        for _ in range(batches):
            pretext_batch(images, rows, config, rng, device)
        _sync(device)
    return batches * batch_size / (time.perf_counter() - started)

"""Which runtime serves a model: timing probes on a check batch and the choice policy.

``runtime="auto"`` times a few batches of each candidate (`plaid.model.backends`) when the model is loaded,
drops any whose probabilities differ from torch fp32 by more than `AGREEMENT_TOLERANCE` on a check batch,
and keeps the fastest; the choice is remembered per machine (`plaid.model.runtime_cache`). A named runtime
is used as given when it builds and agrees; a missing package or a failed conversion falls back to torch.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from plaid.model.backends import (
    AGREEMENT_TOLERANCE,
    AUTO,
    TORCH_FP32,
    Runtime,
    build_runtime,
    candidate_names,
    validate_runtime_name,
)
from plaid.model.runtime_cache import choice_cache_path, choice_key, remember_choice, remembered_choice

logger = logging.getLogger(__name__)

PROBE_BATCH = 8
PROBE_REPEATS = 2


def check_batch(patch_size: int, count: int = PROBE_BATCH, seed: int = 0) -> np.ndarray:
    """A fixed batch of mammogram-like patches: smooth tissue texture in [0, 1] with a few bright specks."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=(count, patch_size, patch_size)), sigma=(0, 6, 6))
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6)
    batch = 0.25 + 0.5 * texture
    for index in range(count):
        for _ in range(index % 4 * 3):
            row, col = rng.integers(2, patch_size - 2, size=2)
            batch[index, row - 1 : row + 2, col - 1 : col + 2] = 1.0
    return batch[:, None].astype(np.float32)


def _time_runtime(runtime: Runtime, batch: np.ndarray, repeats: int = PROBE_REPEATS) -> float:
    """Patches per second over ``repeats`` runs after one warm-up run."""
    runtime(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        runtime(batch)
    return len(batch) * repeats / max(time.perf_counter() - started, 1e-9)


def _agrees(runtime: Runtime, batch: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute probability difference from the reference on the check batch."""
    return float(np.max(np.abs(runtime(batch) - reference))) if len(batch) else 0.0


def _try_build(name: str, model: nn.Module, device: torch.device, batch: np.ndarray,
               reference: np.ndarray) -> Runtime | None:
    """Build and check one runtime; None (with a warning) when it fails or disagrees with torch fp32."""
    try:
        runtime = build_runtime(name, model, device, batch.shape[-1])
        difference = _agrees(runtime, batch, reference)
    except Exception as exc:  # any backend failure (missing package, export error) means: not this one
        logger.warning("runtime %s unavailable (%s: %s)", name, type(exc).__name__, exc)
        return None
    if difference > AGREEMENT_TOLERANCE:
        logger.warning("runtime %s rejected: probabilities differ from torch fp32 by %.4f (> %.2f)", name,
                       difference, AGREEMENT_TOLERANCE)
        return None
    runtime.notes["max_difference"] = f"{difference:.2e}"
    return runtime


def select_runtime(model: nn.Module, device: torch.device, requested: str = AUTO, patch_size: int = 224,
                   probe_batch: int = PROBE_BATCH, remeasure: bool = False) -> Runtime:
    """The runtime to serve ``model`` with: ``requested`` by name, or the fastest agreeing one for 'auto'.

    'auto' times every candidate once per machine and `choice_key` (remembered in `choice_cache_path`); later
    loads, in this process or after a restart, build only the runtime it chose, unless ``remeasure`` or that
    runtime no longer builds or agrees. Torch fp32 is the fallback in every case.
    """
    requested = validate_runtime_name(requested)
    model = model.eval()
    batch = check_batch(patch_size, probe_batch)
    reference_runtime = build_runtime(TORCH_FP32 if device.type == "cpu" else "torch-fp32-cl", model, device,
                                      patch_size)
    reference = reference_runtime(batch)
    if requested != AUTO:
        return _named_or_fallback(requested, model, device, batch, reference, reference_runtime)
    key = choice_key(model, device, patch_size)
    remembered = None if remeasure else remembered_choice(key)
    if remembered:
        runtime = reference_runtime if remembered == reference_runtime.name else _try_build(
            remembered, model, device, batch, reference)
        if runtime is not None:
            logger.info("inference runtime: %s (measured before on this machine, %s)", remembered,
                        choice_cache_path())
            return runtime
        logger.warning("remembered runtime %s no longer builds or agrees; measuring again", remembered)
    timings: dict[str, float] = {}
    best: Runtime | None = None
    for name in candidate_names(device):
        runtime = reference_runtime if name == reference_runtime.name else _try_build(
            name, model, device, batch, reference)
        if runtime is None:
            continue
        runtime.patches_per_s = _time_runtime(runtime, batch)
        timings[name] = runtime.patches_per_s
        if best is None or runtime.patches_per_s > (best.patches_per_s or 0.0):
            best = runtime
    best = best or reference_runtime
    remember_choice(key, best.name, timings)
    logger.info("inference runtime: %s (measured patches/s on %s: %s)", best.name, device,
                ", ".join(f"{name} {speed:.1f}" for name, speed in timings.items()))
    best.notes["timings"] = ", ".join(f"{name}={speed:.2f}" for name, speed in timings.items())
    return best


def _named_or_fallback(name: str, model: nn.Module, device: torch.device, batch: np.ndarray,
                       reference: np.ndarray, fallback: Runtime) -> Runtime:
    """Runtime ``name`` when it builds and agrees with torch fp32, else the torch fallback (logged)."""
    if name == fallback.name:
        return fallback
    runtime = _try_build(name, model, device, batch, reference)
    if runtime is None:
        logger.warning("runtime %s could not be used; falling back to %s", name, fallback.name)
        return fallback
    logger.info("inference runtime: %s", name)
    return runtime

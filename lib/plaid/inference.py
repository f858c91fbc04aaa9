"""Whole-image inference: tile at full resolution, score tissue patches in batches, mark the positives.

The MONAI Label infer task and the `plaid infer` CLI both call `PatchPredictor.predict`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plaid.errors import CheckpointError, PlaidError
from plaid.model import PatchClassifier, load_model
from plaid.patch_data import PatchSettings, patch_settings_from_dict, to_unit_uint16, unit_patches
from plaid.runtime import autocast_for, select_device
from plaid.tiling import DEFAULT_PATCH_SIZE, PatchGrid, grid_for, stitch
from plaid.tissue import tissue_mask, tissue_patches

logger = logging.getLogger(__name__)


@dataclass
class InferConfig:
    """Inference knobs. ``threshold=None`` uses the checkpoint's validation operating point (else 0.5)."""

    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None
    threshold: float | None = None
    skip_background: bool = True
    tissue_min_fraction: float = 0.0
    batch_size: int = 32
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True


@dataclass
class PatchPrediction:
    """Per-patch results for one image."""

    grid: PatchGrid
    probabilities: np.ndarray
    scored: np.ndarray
    threshold: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def positive(self) -> np.ndarray:
        """Boolean per patch: scored and at or above the threshold."""
        return self.scored & (self.probabilities >= self.threshold)

    def label_mask(self) -> np.ndarray:
        """uint8 mask with the image's exact shape, 1 on every positive patch."""
        return stitch(self.positive.astype(np.uint8), self.grid, dtype=np.uint8)

    def probability_map(self) -> np.ndarray:
        """float32 map with the image's shape holding each patch's probability (0 where not scored)."""
        return stitch(np.where(self.scored, self.probabilities, 0.0), self.grid, dtype=np.float32)

    def image_score(self) -> float:
        """Image-level score: the highest patch probability (0 when nothing was scored)."""
        return float(self.probabilities[self.scored].max()) if self.scored.any() else 0.0

    def positive_boxes(self) -> list[dict[str, Any]]:
        """One entry per positive patch: box (top, left, bottom, right, in pixels) and probability."""
        boxes = self.grid.boxes()
        return [
            {"patch": int(i), "box": [int(v) for v in boxes[i]], "probability": round(float(self.probabilities[i]), 6)}
            for i in np.flatnonzero(self.positive)
        ]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of the prediction."""
        return {
            "threshold": float(self.threshold),
            "patch_size": self.grid.patch_size,
            "stride": self.grid.step,
            "grid": list(self.grid.shape),
            "patches_total": len(self.grid),
            "patches_scored": int(self.scored.sum()),
            "patches_skipped": int((~self.scored).sum()),
            "patches_positive": int(self.positive.sum()),
            "image_score": round(self.image_score(), 6),
            "positives": self.positive_boxes(),
            "timings": {key: round(value, 4) for key, value in self.timings.items()},
        }


class PatchPredictor:
    """Holds a trained model and reloads it when its checkpoint file changes on disk.

    A checkpoint that stores its ``patch_settings`` is served with them (patch size, stride, tissue rule);
    the configured ones apply only to older checkpoints and until a checkpoint exists, unless
    ``checkpoint_settings`` is False (experiments that tile differently on purpose).
    """

    def __init__(self, checkpoint: str | Path, config: InferConfig | None = None,
                 checkpoint_settings: bool = True) -> None:
        self.checkpoint = Path(checkpoint)
        self.config = config or InferConfig()
        self.configured = self.config
        self.checkpoint_settings = checkpoint_settings
        self.device = select_device(self.config.device)
        self._model: PatchClassifier | None = None
        self._meta: dict[str, Any] = {}
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple[float, int]:
        stat = self.checkpoint.stat()
        return stat.st_mtime, stat.st_size

    def model(self) -> tuple[PatchClassifier, dict[str, Any]]:
        """The loaded model, (re)loading it if the checkpoint is new or changed."""
        with self._lock:
            stamp = self._current_stamp() if self.checkpoint.is_file() else None
            if self._model is None or stamp != self._stamp:
                try:
                    model, meta = load_model(self.checkpoint, self.device)
                except PlaidError:
                    raise
                except Exception as exc:  # torch raises many types for corrupt or foreign files
                    raise CheckpointError(f"model checkpoint {self.checkpoint.name} cannot be loaded: it is corrupt "
                                          f"or not a PLAID model from a compatible run ({type(exc).__name__})") from exc
                settings = meta.get("patch_settings")
                use_stored = self.checkpoint_settings and isinstance(settings, dict)
                self.config = (with_patch_settings(self.configured, patch_settings_from_dict(settings))
                               if use_stored else self.configured)
                if self.config.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                self._model, self._meta, self._stamp = model, meta, stamp
                logger.info("loaded model %s (epoch %s)", self.checkpoint, meta.get("epoch"))
            return self._model, self._meta

    def threshold(self) -> float:
        """The decision threshold in force."""
        return self._threshold_for(self.model()[1])

    def _threshold_for(self, meta: dict[str, Any]) -> float:
        """The configured threshold, else the checkpoint's validation operating point, else 0.5."""
        return float(self.config.threshold if self.config.threshold is not None else meta.get("threshold", 0.5))

    def predict(self, pixels: np.ndarray, threshold: float | None = None) -> PatchPrediction:
        """Score every (tissue) patch of a full-resolution 2-D image given in original intensity units."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        model, meta = self.model()
        unit = to_unit_uint16(pixels)
        grid = grid_for(unit, self.config.patch_size, self.config.stride)
        if self.config.skip_background:
            scored = tissue_patches(tissue_mask(pixels), grid, self.config.tissue_min_fraction)
        else:
            scored = np.ones(len(grid), dtype=bool)
        timings["prepare_s"] = time.perf_counter() - started
        started = time.perf_counter()
        probabilities = np.zeros(len(grid), dtype=np.float32)
        indices = np.flatnonzero(scored)
        probabilities[indices] = score_patches(model, unit, grid, indices, self.config, self.device)
        timings["model_s"] = time.perf_counter() - started
        threshold = self._threshold_for(meta) if threshold is None else float(threshold)
        return PatchPrediction(grid=grid, probabilities=probabilities, scored=scored,
                               threshold=threshold, timings=timings)


def with_patch_settings(config: InferConfig, settings: PatchSettings) -> InferConfig:
    """``config`` tiling images exactly as ``settings`` (a checkpoint's training settings) say."""
    return replace(config, patch_size=settings.patch_size, stride=settings.stride,
                   skip_background=settings.skip_background, tissue_min_fraction=settings.tissue_min_fraction)


@torch.inference_mode()
def score_patches(model: PatchClassifier, unit_pixels: np.ndarray, grid: PatchGrid, indices: np.ndarray,
                  config: InferConfig, device: torch.device) -> np.ndarray:
    """Probabilities for the grid patches at ``indices`` of a [0, 1]-as-uint16 image, in batches."""
    out = np.zeros(len(indices), dtype=np.float32)
    for start in range(0, len(indices), config.batch_size):
        chunk = indices[start : start + config.batch_size]
        batch = torch.from_numpy(unit_patches(unit_pixels, grid, chunk)).unsqueeze(1).to(device)
        if config.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, config.amp):
            logits = model(batch)
        out[start : start + len(chunk)] = torch.sigmoid(logits.float()).cpu().numpy()
    return out

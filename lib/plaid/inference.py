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

from plaid.model import PatchClassifier, load_model
from plaid.patch_data import to_unit_uint16, unit_patches
from plaid.runtime import autocast_for, select_device
from plaid.spacing import boxes_on_source, image_spacing, resample_image, target_shape, to_original_grid
from plaid.tiling import DEFAULT_PATCH_SIZE, PatchGrid, grid_for, stitch
from plaid.tissue import tissue_mask, tissue_patches

logger = logging.getLogger(__name__)

FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


@dataclass
class InferConfig:
    """Inference knobs. ``threshold=None`` uses the checkpoint's validation operating point (else 0.5);
    ``tta_flips=None`` averages over flips when the checkpoint's training config asks for it."""

    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None
    threshold: float | None = None
    skip_background: bool = True
    tissue_min_fraction: float = 0.0
    batch_size: int = 32
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    tta_flips: bool | None = None


@dataclass
class PatchPrediction:
    """Per-patch results for one image."""

    grid: PatchGrid
    probabilities: np.ndarray
    scored: np.ndarray
    threshold: float
    timings: dict[str, float] = field(default_factory=dict)
    source_shape: tuple[int, int] | None = None

    @property
    def positive(self) -> np.ndarray:
        """Boolean per patch: scored and at or above the threshold."""
        return self.scored & (self.probabilities >= self.threshold)

    def label_mask(self) -> np.ndarray:
        """uint8 mask with the image's exact shape, 1 on every positive patch."""
        return self._on_source_grid(stitch(self.positive.astype(np.uint8), self.grid, dtype=np.uint8))

    def probability_map(self) -> np.ndarray:
        """float32 map with the image's shape holding each patch's probability (0 where not scored)."""
        return self._on_source_grid(stitch(np.where(self.scored, self.probabilities, 0.0), self.grid,
                                           dtype=np.float32))

    def _on_source_grid(self, values: np.ndarray) -> np.ndarray:
        """A per-pixel map on the original image's pixel grid (the image may have been resampled)."""
        return to_original_grid(values, self.source_shape) if self.source_shape else values

    def source_boxes(self) -> np.ndarray:
        """(N, 4) patch boxes (top, left, bottom, right) in the original image's pixels."""
        working = (self.grid.height, self.grid.width)
        return boxes_on_source(self.grid.boxes(), working, self.source_shape or working)

    def image_score(self) -> float:
        """Image-level score: the highest patch probability (0 when nothing was scored)."""
        return float(self.probabilities[self.scored].max()) if self.scored.any() else 0.0

    def positive_boxes(self) -> list[dict[str, Any]]:
        """One entry per positive patch: box (top, left, bottom, right, in pixels) and probability."""
        boxes = self.source_boxes()
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
    """Holds a trained model and reloads it when its checkpoint file changes on disk."""

    def __init__(self, checkpoint: str | Path, config: InferConfig | None = None) -> None:
        self.checkpoint = Path(checkpoint)
        self.config = config or InferConfig()
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
                model, meta = load_model(self.checkpoint, self.device)
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

    def trained_settings(self) -> dict[str, Any]:
        """The checkpoint's patch settings (its training config for checkpoints without them)."""
        meta = self.model()[1]
        return dict(meta.get("patch_settings") or meta.get("config") or {})

    def working_image(self, pixels: np.ndarray, spacing_mm: float | None = None) -> np.ndarray:
        """The image as the model was trained to see it: resampled to the checkpoint's target spacing (if any).

        ``spacing_mm`` is the image's own spacing (DICOM header or metadata); the checkpoint's fallback
        spacing applies when it is None.
        """
        trained = self.trained_settings()
        target = trained.get("target_spacing_mm")
        if not target:
            return pixels
        spacing = image_spacing(spacing_mm, None, trained.get("pixel_spacing_mm"))
        if spacing is None:
            logger.warning("the model was trained at %.3f mm but this image's pixel spacing is unknown: "
                           "scoring it at its own pixels", target)
        return resample_image(pixels, target_shape(pixels.shape, spacing, target))

    def scoring_config(self) -> InferConfig:
        """The config patches are scored with: flip TTA resolved from the checkpoint when not set."""
        if self.config.tta_flips is not None:
            return self.config
        trained = self.model()[1].get("config") or {}
        return replace(self.config, tta_flips=bool(trained.get("tta_flips", False)))

    def predict(self, pixels: np.ndarray, threshold: float | None = None,
                spacing_mm: float | None = None) -> PatchPrediction:
        """Score every (tissue) patch of a full-resolution 2-D image given in original intensity units.

        Results map back to the original pixel grid when the model works at another spacing.
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        model, meta = self.model()
        source_shape = (int(pixels.shape[0]), int(pixels.shape[1]))
        pixels = self.working_image(pixels, spacing_mm)
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
        probabilities[indices] = score_patches(model, unit, grid, indices, self.scoring_config(), self.device)
        timings["model_s"] = time.perf_counter() - started
        threshold = self._threshold_for(meta) if threshold is None else float(threshold)
        return PatchPrediction(grid=grid, probabilities=probabilities, scored=scored, threshold=threshold,
                               timings=timings,
                               source_shape=source_shape if pixels.shape != source_shape else None)


@torch.inference_mode()
def score_patches(model: PatchClassifier, unit_pixels: np.ndarray, grid: PatchGrid, indices: np.ndarray,
                  config: InferConfig, device: torch.device) -> np.ndarray:
    """Probabilities for the grid patches at ``indices`` of a [0, 1]-as-uint16 image, in batches.

    With ``config.tta_flips`` each patch is also scored flipped left-right, up-down and both, and the four
    probabilities are averaged.
    """
    out = np.zeros(len(indices), dtype=np.float32)
    views = FLIP_VIEWS if config.tta_flips else FLIP_VIEWS[:1]
    for start in range(0, len(indices), config.batch_size):
        chunk = indices[start : start + config.batch_size]
        patches = torch.from_numpy(unit_patches(unit_pixels, grid, chunk)).unsqueeze(1).to(device)
        total = torch.zeros(len(chunk))
        for dims in views:
            batch = torch.flip(patches, dims) if dims else patches
            if config.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, config.amp):
                logits = model(batch)
            total += torch.sigmoid(logits.float()).cpu()
        out[start : start + len(chunk)] = (total / len(views)).numpy()
    return out

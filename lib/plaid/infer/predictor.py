"""Whole-image inference: tile at full resolution, score tissue patches in batches, mark the positives.

The MONAI Label infer task, the `plaid infer` CLI and evaluation all go through `PatchPredictor`, for one
model or an ensemble checkpoint alike (an ensemble's runtime returns the mean of its members' probabilities,
so flip TTA averages that mean over the flips): each image is prepared once
(`plaid.patches.prepared.prepare`) and its tissue patches are scored in batches by the
runtime chosen when the model was loaded (`plaid.model.backends`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from plaid.errors import CheckpointError, PlaidError
from plaid.io.images import ImageMeta
from plaid.model.backends import AUTO, RUNTIME_CHOICES, RUNTIME_ENV, Runtime, validate_runtime_name
from plaid.model.checkpoint import load_model
from plaid.model.device import default_batch_size, select_device
from plaid.model.runtime_choice import select_runtime
from plaid.options import option, same_option
from plaid.patches.grid import PatchGrid, stitch
from plaid.patches.prepared import PatchSettings, PreparedImage, patch_settings_from_dict, prepare
from plaid.patches.spacing import boxes_on_source, image_spacing, resample_image, target_shape, to_original_grid

logger = logging.getLogger(__name__)

FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


@dataclass
class InferConfig:
    """Inference knobs (each field's help is its documentation; the tiling fields are `PatchSettings`' own).

    The tiling fields apply only to a checkpoint that records none (see `PatchPredictor.patch_settings`).
    """

    patch_size: int = same_option(PatchSettings, "patch_size")
    stride: int | None = same_option(PatchSettings, "stride")
    threshold: float | None = option(None, help="decision threshold a patch probability must reach to be marked",
                                     shown_default="the checkpoint's",
                                     notes="By default the operating point stored in the checkpoint (see the "
                                           "training option `operating_point`), else 0.5")
    skip_background: bool = same_option(PatchSettings, "skip_background")
    tissue_min_fraction: float = same_option(PatchSettings, "tissue_min_fraction")
    batch_size: int | None = option(None, help="patches per forward pass", shown_default="chosen for the device",
                                    notes="32 on a CPU; on CUDA a size chosen from the GPU's memory")
    device: str = option("auto", help="torch device: `auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`")
    runtime: str = option(default_factory=lambda: os.environ.get(RUNTIME_ENV, AUTO), shown_default="auto",
                          help="inference runtime: `auto` times the candidates when the model loads and keeps the "
                               "fastest that agrees with torch fp32, or one runtime by name (`$PLAID_RUNTIME` sets "
                               "the default)", choices=RUNTIME_CHOICES, notes="See docs/performance.md")
    tta_flips: bool | None = option(None, help="average each patch over its flips", shown_default="the checkpoint's",
                                    notes="By default as the checkpoint's training config says (`tta_flips`)")

    def __post_init__(self) -> None:
        self.runtime = validate_runtime_name(self.runtime)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def patch_settings(self) -> PatchSettings:
        """The configured tiling, for checkpoints that do not record their own."""
        return PatchSettings(patch_size=self.patch_size, stride=self.stride, skip_background=self.skip_background,
                             tissue_min_fraction=self.tissue_min_fraction)


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
    """Holds a trained model and its runtime, reloading both when the checkpoint file changes on disk.

    The predictor tiles images as its checkpoint was trained: the checkpoint's ``patch_settings`` (patch
    size, stride, tissue rule, spacing), else its training config's, are used; the configured ones apply
    only until a checkpoint exists, or when ``checkpoint_settings`` is False (experiments that tile
    differently on purpose).
    """

    def __init__(self, checkpoint: str | Path, config: InferConfig | None = None,
                 checkpoint_settings: bool = True) -> None:
        self.checkpoint = Path(checkpoint)
        self.config = config or InferConfig()
        self.checkpoint_settings = checkpoint_settings
        self.device = select_device(self.config.device)
        self._model: nn.Module | None = None
        self._runtime: Runtime | None = None
        self._meta: dict[str, Any] = {}
        self._settings = self.config.patch_settings()
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple[float, int]:
        stat = self.checkpoint.stat()
        return stat.st_mtime, stat.st_size

    def _load(self) -> tuple[nn.Module, Runtime, dict[str, Any]]:
        """The model, its runtime and metadata, (re)built if the checkpoint is new or changed."""
        with self._lock:
            stamp = self._current_stamp() if self.checkpoint.is_file() else None
            if self._model is None or self._runtime is None or stamp != self._stamp:
                try:
                    model, meta = load_model(self.checkpoint, self.device)
                except PlaidError:
                    raise
                except Exception as exc:  # torch raises many types for corrupt or foreign files
                    raise CheckpointError(f"model checkpoint {self.checkpoint.name} cannot be loaded: it is corrupt "
                                          f"or not a PLAID model from a compatible run ({type(exc).__name__})") from exc
                settings = self._settings_for(meta)
                runtime = select_runtime(model, self.device, self.config.runtime, settings.patch_size)
                self._model, self._runtime, self._meta, self._stamp = model, runtime, meta, stamp
                self._settings = settings
                what = f"ensemble of {len(meta['members'])}" if "members" in meta else f"epoch {meta.get('epoch')}"
                logger.info("loaded model %s (%s) on runtime %s", self.checkpoint, what, runtime.name)
            return self._model, self._runtime, self._meta

    def model(self) -> tuple[nn.Module, dict[str, Any]]:
        """The loaded model (a `PatchClassifier`, or an `EnsembleClassifier` whose probability is its members'
        mean), (re)loading it if the checkpoint is new or changed."""
        model, _, meta = self._load()
        return model, meta

    def runtime(self) -> Runtime:
        """The runtime the current checkpoint is served with."""
        return self._load()[1]

    @property
    def batch_size(self) -> int:
        """Patches per forward pass: the configured size, else one chosen for the device."""
        return self.config.batch_size or default_batch_size(self.device)

    def threshold(self) -> float:
        """The decision threshold in force."""
        return self._threshold_for(self.model()[1])

    def _threshold_for(self, meta: dict[str, Any]) -> float:
        """The configured threshold, else the checkpoint's validation operating point, else 0.5."""
        return float(self.config.threshold if self.config.threshold is not None else meta.get("threshold", 0.5))

    def _settings_for(self, meta: dict[str, Any]) -> PatchSettings:
        """A checkpoint's tiling: its stored patch settings, else its training config's, else the configured."""
        if not self.checkpoint_settings:
            spacing = meta.get("patch_settings") or meta.get("config") or {}
            return replace(self.config.patch_settings(), target_spacing_mm=spacing.get("target_spacing_mm"),
                           pixel_spacing_mm=spacing.get("pixel_spacing_mm"))
        for key in ("patch_settings", "config"):
            if isinstance(meta.get(key), dict):
                return patch_settings_from_dict(meta[key])
        return self.config.patch_settings()

    def patch_settings(self) -> PatchSettings:
        """How this predictor cuts images and which patches it scores (as the checkpoint was trained)."""
        if self.checkpoint.is_file():
            self._load()
        return self._settings

    def working_image(self, pixels: np.ndarray, spacing_mm: float | None = None) -> np.ndarray:
        """The image as the model was trained to see it: resampled to the checkpoint's target spacing (if any).

        ``spacing_mm`` is the image's own spacing (DICOM header or metadata); the checkpoint's fallback
        spacing applies when it is None.
        """
        settings = self.patch_settings()
        if not settings.target_spacing_mm:
            return pixels
        spacing = image_spacing(spacing_mm, None, settings.pixel_spacing_mm)
        if spacing is None:
            logger.warning("the model was trained at %.3f mm but this image's pixel spacing is unknown: "
                           "scoring it at its own pixels", settings.target_spacing_mm)
        return resample_image(pixels, target_shape(pixels.shape, spacing, settings.target_spacing_mm))

    def scoring_config(self) -> InferConfig:
        """The config patches are scored with: flip TTA resolved from the checkpoint when not set."""
        if self.config.tta_flips is not None:
            return self.config
        trained = self.model()[1].get("config") or {}
        return replace(self.config, tta_flips=bool(trained.get("tta_flips", False)))

    def prepare(self, pixels: np.ndarray, meta: ImageMeta | None = None,
                spacing_mm: float | None = None) -> PreparedImage:
        """Prepare a full-resolution image (original intensity units) the way this predictor scores it:
        resampled to the model's spacing when it was trained at one (``spacing_mm`` defaults to the header's)."""
        if spacing_mm is None and meta is not None and meta.pixel_spacing_mm:
            spacing_mm = float(meta.pixel_spacing_mm[0])
        working = self.working_image(pixels, spacing_mm)
        image = prepare(working, self.patch_settings(), meta=meta)
        if working.shape != pixels.shape:
            image.source_shape = (int(pixels.shape[0]), int(pixels.shape[1]))
        return image

    def predict(self, pixels: np.ndarray, threshold: float | None = None,
                spacing_mm: float | None = None) -> PatchPrediction:
        """Score every (tissue) patch of a full-resolution 2-D image given in original intensity units.

        Results map back to the original pixel grid when the model works at another spacing.
        """
        started = time.perf_counter()
        image = self.prepare(pixels, spacing_mm=spacing_mm)
        prepare_s = time.perf_counter() - started
        prediction = self.predict_prepared(image, threshold)
        prediction.timings = {"prepare_s": prepare_s, **prediction.timings}
        return prediction

    def predict_prepared(self, image: PreparedImage, threshold: float | None = None) -> PatchPrediction:
        """Score the tissue patches of an image already prepared (by `prepare` or `plaid.patches.prepared`)."""
        started = time.perf_counter()
        _, _, meta = self._load()
        probabilities = np.zeros(len(image.grid), dtype=np.float32)
        indices = np.flatnonzero(image.tissue)
        probabilities[indices] = self.score(image, indices)
        threshold = self._threshold_for(meta) if threshold is None else float(threshold)
        return PatchPrediction(grid=image.grid, probabilities=probabilities, scored=image.tissue.copy(),
                               threshold=threshold, timings={"model_s": time.perf_counter() - started},
                               source_shape=image.source_shape)

    def score(self, image: PreparedImage, indices: np.ndarray) -> np.ndarray:
        """Probabilities for the grid patches at ``indices`` of a prepared image, in batches.

        With flip TTA each patch is also scored flipped left-right, up-down and both, and the four
        probabilities are averaged.
        """
        runtime = self.runtime()
        views = FLIP_VIEWS if self.scoring_config().tta_flips else FLIP_VIEWS[:1]
        indices = np.asarray(indices, dtype=np.int64)
        out = np.zeros(len(indices), dtype=np.float32)
        size = self.batch_size
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            stack = image.patch_stack(chunk)[:, None]
            total = sum(runtime(np.ascontiguousarray(np.flip(stack, axis=dims)) if dims else stack) for dims in views)
            out[start : start + len(chunk)] = total / len(views)
        return out


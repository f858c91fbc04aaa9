"""A `PatchPredictor` set up to tile images exactly as its checkpoint was trained (patch size, stride, tissue rule)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from plaid.inference import InferConfig, PatchPredictor
from plaid.patch_data import PatchSettings
from plaid.training import TrainConfig


def trained_settings(meta: dict) -> PatchSettings:
    """The patch settings recorded in a checkpoint's training config (paper defaults when absent)."""
    return TrainConfig.from_mapping(meta.get("config") or {}).patch_settings()


def make_predictor(
    checkpoint: str | Path, threshold: float | None = None, batch_size: int | None = None, device: str = "auto",
    runtime: str = "auto",
) -> tuple[PatchPredictor, PatchSettings]:
    """Load ``checkpoint`` once and return a predictor using its training patch settings, plus those settings."""
    predictor = PatchPredictor(checkpoint, InferConfig(threshold=threshold, batch_size=batch_size, device=device,
                                                       runtime=runtime))
    _, meta = predictor.model()
    settings = trained_settings(meta)
    predictor.config = replace(predictor.config, patch_size=settings.patch_size, stride=settings.stride,
                               skip_background=settings.skip_background,
                               tissue_min_fraction=settings.tissue_min_fraction)
    return predictor, settings

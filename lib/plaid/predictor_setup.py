"""A `PatchPredictor` set up to tile images exactly as its checkpoint was trained (patch size, stride, tissue rule)."""

from __future__ import annotations

from pathlib import Path

from plaid.infer.predictor import InferConfig, PatchPredictor, with_patch_settings
from plaid.patches.prepared import PatchSettings, patch_settings_from_dict
from plaid.train.loop import TrainConfig


def trained_settings(meta: dict) -> PatchSettings:
    """The checkpoint's stored patch settings, else those of its training config (paper defaults when absent)."""
    if isinstance(meta.get("patch_settings"), dict):
        return patch_settings_from_dict(meta["patch_settings"])
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
    predictor.config = predictor.configured = with_patch_settings(predictor.config, settings)
    return predictor, settings

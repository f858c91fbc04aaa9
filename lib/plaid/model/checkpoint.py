"""Checkpoints: the classifier's weights with plain metadata (config, patch settings, split, threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from plaid.errors import ModelNotFoundError
from plaid.model.input_filter import DEFAULT_INPUT_FILTER
from plaid.model.network import DEFAULT_ARCHITECTURE, DEFAULT_FROZEN_LAYERS, PatchClassifier


def save_checkpoint(path: str | Path, model: PatchClassifier, **extra: Any) -> Path:
    """Write a checkpoint (weights plus plain metadata) atomically, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": model.state_dict(), "frozen_layers": model.frozen_layers,
               "architecture": model.architecture, "input_filter": model.input_filter_name, **extra}
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(payload, str(temporary))
    temporary.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no model checkpoint at {path}")
    payload = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" not in payload:
        payload = {"state_dict": payload}
    return payload


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[PatchClassifier, dict[str, Any]]:
    """Rebuild a trained classifier from a checkpoint; returns the model (eval mode) and its metadata."""
    payload = read_checkpoint(path)
    model = PatchClassifier(frozen_layers=int(payload.get("frozen_layers", DEFAULT_FROZEN_LAYERS)),
                            architecture=str(payload.get("architecture", DEFAULT_ARCHITECTURE)),
                            input_filter=str(payload.get("input_filter", DEFAULT_INPUT_FILTER)))
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return model, {key: value for key, value in payload.items() if key != "state_dict"}

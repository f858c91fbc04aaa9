"""Checkpoints: the classifier's weights with plain metadata (config, patch settings, split, threshold).

A checkpoint holds one model, or an ensemble (`plaid.model.ensemble`): several members' weights under
``members`` with the settings they share and one threshold; `load_model` rebuilds either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from plaid.errors import ModelNotFoundError
from plaid.model.ensemble import MEMBERS_KEY, build_ensemble, build_member, is_ensemble
from plaid.model.network import PatchClassifier


def save_checkpoint(path: str | Path, model: PatchClassifier, **extra: Any) -> Path:
    """Write a checkpoint (weights plus plain metadata) atomically, so readers never see half a file."""
    return write_payload(path, {"state_dict": model.state_dict(), "frozen_layers": model.frozen_layers,
                                "architecture": model.architecture, "input_filter": model.input_filter_name,
                                **extra})


def write_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint payload atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    if isinstance(payload, dict) and "state_dict" not in payload and not is_ensemble(payload):
        payload = {"state_dict": payload}
    return payload


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained classifier, or an ensemble of them, from a checkpoint; returns the model (eval mode)
    and its metadata (without weights; an ensemble's ``members`` keep their own metadata)."""
    payload = read_checkpoint(path)
    model = build_ensemble(payload) if is_ensemble(payload) else build_member(payload)
    model.to(device).eval()
    meta = {key: value for key, value in payload.items() if key != "state_dict"}
    if is_ensemble(payload):
        meta[MEMBERS_KEY] = [{key: value for key, value in member.items() if key != "state_dict"}
                             for member in payload[MEMBERS_KEY]]
    return model, meta

"""One-line descriptions of a served model, built from its checkpoint (MONAI Label's app and infer task)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plaid.model.checkpoint import read_checkpoint
from plaid.model.ensemble import MEMBERS_KEY, is_ensemble
from plaid.model.input_filter import CONTRAST
from plaid.model.network import DEFAULT_ARCHITECTURE

logger = logging.getLogger(__name__)


def describe_model(architecture: str, input_filter: str, patch_size: int, threshold: float | None) -> str:
    """E.g. 'resnet18 (contrast front end) on full-resolution 64x64 patches, operating point 0.42'."""
    front_end = " (contrast front end)" if input_filter == CONTRAST else ""
    text = f"{architecture}{front_end} on full-resolution {patch_size}x{patch_size} patches"
    return text if threshold is None else f"{text}, operating point {threshold:.2f}"


def checkpoint_patch_size(meta: dict[str, Any], default: int) -> int:
    """The patch size a checkpoint was trained with (its patch settings, else its training config)."""
    for key in ("patch_settings", "config"):
        values = meta.get(key)
        if isinstance(values, dict) and values.get("patch_size"):
            return int(values["patch_size"])
    return default


def describe_checkpoint(path: str | Path, default_patch_size: int = 224, threshold: float | None = None) -> str:
    """What the checkpoint at ``path`` is (see `describe_model`); ``threshold`` overrides its operating point.

    Without a checkpoint (or with an unreadable one) the text says so, for clients listing the server."""
    path = Path(path)
    if not path.is_file():
        return f"no trained model yet ({path.name}); train one to classify full-resolution mammogram patches"
    try:
        meta = read_checkpoint(path)
    except Exception as exc:  # a corrupt file: describe it as such, the infer request reports the error
        logger.warning("cannot describe model %s (%s: %s)", path, type(exc).__name__, exc)
        return f"model {path.name} cannot be read"
    stored = meta.get("threshold")
    chosen = threshold if threshold is not None else (float(stored) if stored is not None else None)
    architecture, input_filter = str(meta.get("architecture", DEFAULT_ARCHITECTURE)), meta.get("input_filter", "none")
    if is_ensemble(meta):  # e.g. "ensemble of 3 resnet50 (contrast front end) on ..."
        members = meta[MEMBERS_KEY]
        backbones = sorted({str(member.get("architecture", DEFAULT_ARCHITECTURE)) for member in members})
        filters = {str(member.get("input_filter", "none")) for member in members}
        architecture = f"ensemble of {len(members)} {'/'.join(backbones)}"
        input_filter = filters.pop() if len(filters) == 1 else "mixed"
    return describe_model(architecture, str(input_filter), checkpoint_patch_size(meta, default_patch_size), chosen)

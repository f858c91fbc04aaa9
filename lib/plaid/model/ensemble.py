"""Ensembles of trained patch classifiers: one module whose probability is the mean of its members'.

An ensemble checkpoint (`plaid ensemble`) holds every member's weights and architecture under ``members``
beside the settings they share (patch settings, flip TTA) and one threshold of its own. `EnsembleClassifier`
returns, per patch, the logit of the members' mean probability, so every runtime (`plaid.model.backends`)
serves it as it serves one model: its sigmoid is the mean of the members' probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from plaid.errors import PlaidInputError
from plaid.io.datalist import entry_group
from plaid.model.input_filter import DEFAULT_INPUT_FILTER
from plaid.model.network import DEFAULT_ARCHITECTURE, DEFAULT_FROZEN_LAYERS, PatchClassifier
from plaid.patches.prepared import patch_settings_from_dict

ENSEMBLE_ARCHITECTURE = "ensemble"
MEMBERS_KEY = "members"
MEMBER_KEYS = ("architecture", "frozen_layers", "input_filter", "threshold", "epoch", "config", "source")
TRAINING_PARTS = ("train", "validation")


class EnsembleClassifier(nn.Module):
    """Maps (N, 1, H, W) patches to N logits whose sigmoid is the mean of the members' probabilities.

    The mean is taken in log space (log-sum-exp of log-sigmoids), so it stays exact where a member is sure.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.architecture = ENSEMBLE_ARCHITECTURE

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N,): log(mean p) - log(mean (1 - p)) over the members."""
        logits = torch.stack([member(patches).float() for member in self.members])
        log_count = math.log(len(self.members))
        log_mean = torch.logsumexp(nn.functional.logsigmoid(logits), dim=0) - log_count
        log_mean_complement = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=0) - log_count
        return log_mean - log_mean_complement


def is_ensemble(payload: Mapping[str, Any]) -> bool:
    """True for an ensemble checkpoint's payload or metadata."""
    return isinstance(payload.get(MEMBERS_KEY), list)


def build_member(payload: Mapping[str, Any]) -> PatchClassifier:
    """One classifier from a single-model checkpoint payload (weights loaded, not moved, not in eval mode)."""
    model = PatchClassifier(frozen_layers=int(payload.get("frozen_layers", DEFAULT_FROZEN_LAYERS)),
                            architecture=str(payload.get("architecture", DEFAULT_ARCHITECTURE)),
                            input_filter=str(payload.get("input_filter", DEFAULT_INPUT_FILTER)))
    model.load_state_dict(payload["state_dict"])
    return model


def build_ensemble(payload: Mapping[str, Any]) -> EnsembleClassifier:
    """The ensemble module of an ensemble checkpoint payload."""
    return EnsembleClassifier([build_member(member) for member in payload[MEMBERS_KEY]])


def member_entry(payload: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What an ensemble stores of one member checkpoint: its weights, how to rebuild it, its own threshold and
    training config, and the file it came from."""
    entry = {key: payload[key] for key in MEMBER_KEYS if key in payload}
    entry.update(state_dict=payload["state_dict"], source=source)
    return entry


def shared_patch_settings(members: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The patch settings every member was trained with; PlaidInputError naming the first member that differs
    (an ensemble tiles each image once, so its members must agree on patch size, stride, tissue rule and
    spacing)."""
    settings = [asdict(patch_settings_from_dict(member.get("patch_settings") or member.get("config") or {}))
                for member in members]
    for name, other in zip(names[1:], settings[1:], strict=True):
        differing = [f"{key} {other[key]!r} vs {settings[0][key]!r}" for key in settings[0]
                     if other[key] != settings[0][key]]
        if differing:
            raise PlaidInputError(f"member {name} was trained with other patch settings than {names[0]} "
                                  f"({', '.join(differing)}); an ensemble's members must tile images alike")
    return settings[0]


def shared_config(members: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The training-config values all members agree on (the ones they differ in, such as the seed, are left out);
    PlaidInputError when they differ in ``tta_flips``, which decides how the ensemble scores a patch."""
    configs = [dict(member.get("config") or {}) for member in members]
    flips = [bool(config.get("tta_flips", False)) for config in configs]
    if len(set(flips)) > 1:
        listed = ", ".join(f"{name}: {flip}" for name, flip in zip(names, flips, strict=True))
        raise PlaidInputError(f"members differ in tta_flips ({listed}); an ensemble scores every patch one way")
    common = {key: value for key, value in configs[0].items() if all(c.get(key) == value for c in configs[1:])}
    common["tta_flips"] = flips[0]
    return common


def combined_split(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One split for the ensemble: the union of the members' training and validation images, and as test images
    those every member held out as test whose patients no member trained or validated on."""
    splits = [member.get("split") if isinstance(member.get("split"), dict) else {} for member in members]
    combined: dict[str, Any] = {part: _union([split.get(part) or [] for split in splits]) for part in TRAINING_PARTS}
    seen = {entry_group(entry) for part in TRAINING_PARTS for entry in combined[part]}
    tested = [{entry.get("image_id") for entry in split.get("test") or []} for split in splits]
    common = set.intersection(*tested) if tested and all(tested) else set()
    combined["test"] = [entry for entry in (splits[0].get("test") or [])
                        if entry.get("image_id") in common and entry_group(entry) not in seen]
    return combined


def mean_slope1_threshold(payloads: Sequence[Mapping[str, Any]]) -> float:
    """The mean of the members' slope-1 thresholds (each one's served threshold when it stored none apart)."""
    return float(np.mean([float(member.get("slope1_threshold", member.get("threshold", 0.5))) for member in payloads]))


def training_patients(meta: Mapping[str, Any]) -> set[str]:
    """Patients (split groups) a checkpoint's model trained or validated on, from its stored split."""
    split = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    return {entry_group(entry) for part in TRAINING_PARTS for entry in split.get(part) or []}


def _union(parts: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for part in parts:
        for entry in part:
            key = str(entry.get("image_id") or entry.get("image"))
            if key not in seen:
                seen.add(key)
                out.append(dict(entry))
    return out


def ensemble_payload(payloads: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """An ensemble checkpoint payload (without its threshold) from single-model checkpoint payloads; refuses
    an ensemble as a member and members that tile or score patches differently (PlaidInputError naming them)."""
    if len(payloads) < 2:
        raise PlaidInputError(f"an ensemble needs at least two member checkpoints, got {len(payloads)}")
    for name, payload in zip(names, payloads, strict=True):
        if is_ensemble(payload):
            raise PlaidInputError(f"member {name} is itself an ensemble: list its member checkpoints instead")
        if "state_dict" not in payload:
            raise PlaidInputError(f"member {name} holds no model weights")
    return {
        MEMBERS_KEY: [member_entry(payload, name) for payload, name in zip(payloads, names, strict=True)],
        "architecture": ENSEMBLE_ARCHITECTURE,
        "patch_settings": shared_patch_settings(payloads, names),
        "config": shared_config(payloads, names),
        "split": combined_split(payloads),
    }

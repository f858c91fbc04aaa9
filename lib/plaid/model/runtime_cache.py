"""The runtime 'auto' chose, remembered in this process and per machine on disk.

The choice is kept in ``runtime-choice.json`` under ``$PLAID_CACHE_DIR`` (default ``~/.cache/plaid``), keyed
by everything that can change the ranking (CPU model and flags, architecture, library versions, backbone,
input filter, patch size, device), so a server restart builds only the remembered runtime and times nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plaid.model.backends import RUNTIME_NAMES

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "PLAID_CACHE_DIR"
CHOICE_FILE = "runtime-choice.json"
# Packages whose version can change which runtime is fastest (or whether it builds at all).
RANKING_PACKAGES = ("torch", "torchvision", "onnxruntime", "openvino")

# The runtime "auto" picked, per choice key (see `choice_key`): a reloaded checkpoint reuses it without re-timing.
_CHOSEN: dict[str, str] = {}
_CHOSEN_LOCK = threading.Lock()


def choice_cache_path() -> Path:
    """The file that remembers 'auto' choices on this machine: ``$PLAID_CACHE_DIR/runtime-choice.json``."""
    root = os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "plaid"
    return Path(root).expanduser() / CHOICE_FILE


def _cpu_identity() -> dict[str, str]:
    """The CPU's model name and a digest of its instruction-set flags (first processor in /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:  # not Linux: the platform's processor string is what there is
        pass
    flags = fields.get("flags") or fields.get("Features") or ""
    return {"cpu": fields.get("model name") or platform.processor() or "unknown",
            "cpu_flags": hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def choice_key(model: nn.Module, device: torch.device, patch_size: int) -> dict[str, Any]:
    """Everything the fastest runtime depends on: machine, library versions, model shape, patch size, device."""
    key: dict[str, Any] = {
        **_cpu_identity(), "machine": platform.machine(), "threads": torch.get_num_threads(),
        **{package: _version(package) for package in RANKING_PACKAGES},
        "architecture": str(getattr(model, "architecture", type(model).__name__)),
        "input_filter": str(getattr(model, "input_filter_name", "none")),
        "patch_size": int(patch_size), "device": str(device),
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def _key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_choices(path: Path) -> dict[str, Any]:
    """The remembered choices in ``path``; an unreadable or malformed file is ignored with a warning."""
    if not path.is_file():
        return {}
    try:
        choices = json.loads(path.read_text())
        if not isinstance(choices, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("runtime"), str) for entry in choices.values()
        ):
            raise ValueError("not a mapping of choice entries")
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the runtime choice cache %s (%s: %s); measuring again", path, type(exc).__name__,
                       exc)
        return {}
    return choices


def remembered_choice(key: dict[str, Any]) -> str | None:
    """The runtime measured before for ``key``: in this process, else in the machine's cache file."""
    key_id = _key_id(key)
    with _CHOSEN_LOCK:
        if key_id in _CHOSEN:
            return _CHOSEN[key_id]
    entry = _read_choices(choice_cache_path()).get(key_id)
    name = entry.get("runtime") if entry else None
    if name not in RUNTIME_NAMES:
        return None
    with _CHOSEN_LOCK:
        _CHOSEN[key_id] = name
    return name


def remember_choice(key: dict[str, Any], name: str, timings: dict[str, float]) -> None:
    """Record ``name`` for ``key`` in this process and (atomically) in the cache file; a write failure only warns."""
    key_id = _key_id(key)
    with _CHOSEN_LOCK:
        _CHOSEN[key_id] = name
        path = choice_cache_path()
        choices = _read_choices(path)
        choices[key_id] = {"runtime": name, "patches_per_s": {k: round(v, 2) for k, v in timings.items()},
                           "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key": key}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(choices, indent=1, sort_keys=True))
            temporary.replace(path)
        except OSError as exc:
            logger.warning("could not remember the runtime choice in %s (%s); the next start measures again", path,
                           exc)


def forget_choices() -> None:
    """Drop the choices remembered in this process (the machine's cache file stays)."""
    with _CHOSEN_LOCK:
        _CHOSEN.clear()

"""`TrainConfig`: every training option, its limits, and how it is read from flags, recipes, requests and stored
runs (patch options flat outside, one `PatchSettings` inside)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

import torch

from plaid.errors import PlaidInputError
from plaid.model.input_filter import DEFAULT_INPUT_FILTER
from plaid.model.network import DEFAULT_ARCHITECTURE, DEFAULT_FROZEN_LAYERS, PatchClassifier, unknown_model_option
from plaid.options import dataclass_from_mapping
from plaid.patches.prepared import PatchSettings
from plaid.train.operating_point import DEFAULT_MIN_NORMAL_FILMS, FALSE_MARKS, OPERATING_POINTS

# Upper bounds on what a client may ask for: beyond them Adam diverges or a request ties the server up for days.
MAX_LEARNING_RATE = 0.1
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096
MAX_PATCH_SIZE = 2048
MIN_PATCH_SIZE = 32  # the ResNet stem and four stride-2 stages need at least this many pixels
MAX_NEGATIVE_RATIO = 100.0
MAX_INSERTED_POSITIVES = 100_000
SPACING_RANGE_MM = (0.005, 5.0)
MAX_FALSE_MARKS_PER_IMAGE = 1000.0
MAX_ENSEMBLE_MEMBERS = 32


@lru_cache(maxsize=1)
def keras_layer_count() -> int:
    """How many Keras-counted layers the ResNet50 backbone has (the upper bound of ``frozen_layers``)."""
    return len(PatchClassifier(frozen_layers=0).keras_layers())


# The flat option names (CLI flags, recipes, request params, stored configs) that set `TrainConfig.patch_settings`.
PATCH_OPTIONS = ("patch_size", "stride", "min_overlap", "skip_background", "target_spacing_mm", "pixel_spacing_mm")
PATCH_SETTINGS = "patch_settings"


@dataclass
class TrainConfig:
    """Every training knob; the defaults reproduce the paper. How images are cut into patches is one
    `PatchSettings`; its options are given and stored flat (``patch_size``, ``stride``, ... see `PATCH_OPTIONS`)."""

    patch_settings: PatchSettings = field(default_factory=PatchSettings)
    epochs: int = 120
    batch_size: int = 32
    learning_rate: float = 1e-4
    frozen_layers: int = DEFAULT_FROZEN_LAYERS
    negative_ratio: float = 1.0
    redraw_negatives: bool = True
    max_negatives_per_image: int | None = None
    val_fraction: float = 0.05
    seed: int = 0
    pretrained: bool = True
    weights_path: str | None = None
    offline: bool = False
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    num_workers: int = 0
    multi_gpu: bool = False
    init_checkpoint: str | None = None
    class_weighted_loss: bool = False
    inserted_positives: int = 0
    tta_flips: bool = False
    architecture: str = DEFAULT_ARCHITECTURE
    input_filter: str = DEFAULT_INPUT_FILTER
    pretrain_steps: int = 0
    pretrain_learning_rate: float = 1e-3
    operating_point: str = FALSE_MARKS
    max_false_marks_per_image: float = 1.0
    operating_point_normal_women: int = 2
    operating_point_min_normal_films: int = DEFAULT_MIN_NORMAL_FILMS
    ensemble_members: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict with the patch options flat, as CLI flags, recipes and requests give them
        (and as every stored train_config.json and checkpoint holds them)."""
        patch = asdict(self.patch_settings)
        values = {item.name: getattr(self, item.name) for item in fields(self) if item.name != PATCH_SETTINGS}
        return {**{name: patch[name] for name in PATCH_OPTIONS}, **values}

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every option a recipe, request or stored config may set (the flat names `to_dict` writes)."""
        return PATCH_OPTIONS + tuple(item.name for item in fields(cls) if item.name != PATCH_SETTINGS)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from request/CLI/stored values, ignoring unknown keys and coercing strings to each field's type.

        Patch options come flat (``patch_size``, ...) or, nested, as a ``patch_settings`` mapping; flat keys win.
        """
        flat = flat_options(values)
        config = dataclass_from_mapping(cls, {key: value for key, value in flat.items() if key != PATCH_SETTINGS})
        patch = dataclass_from_mapping(PatchSettings, {name: flat.get(name) for name in PATCH_OPTIONS})
        return replace(config, patch_settings=patch)

    def validate(self) -> TrainConfig:
        """``self`` when every option is in range, else `PlaidInputError` naming the first bad option."""
        patch = self.patch_settings
        checks = {
            "patch_size": MIN_PATCH_SIZE <= patch.patch_size <= MAX_PATCH_SIZE,
            "stride": patch.stride is None or 1 <= patch.stride <= MAX_PATCH_SIZE,
            "min_overlap": 0.0 <= patch.min_overlap <= 1.0,
            "epochs": 1 <= self.epochs <= MAX_EPOCHS,
            "batch_size": 1 <= self.batch_size <= MAX_BATCH_SIZE,
            "learning_rate": _in_range(self.learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True),
            "frozen_layers": 0 <= self.frozen_layers <= keras_layer_count(),
            "negative_ratio": _in_range(self.negative_ratio, 0.0, MAX_NEGATIVE_RATIO, low_open=True),
            "max_negatives_per_image": (self.max_negatives_per_image is None
                                        or 1 <= self.max_negatives_per_image <= 10_000_000),
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "seed": 0 <= self.seed < 2**32,
            "num_workers": 0 <= self.num_workers <= 256,
            "target_spacing_mm": patch.target_spacing_mm is None or _in_range(patch.target_spacing_mm,
                                                                               *SPACING_RANGE_MM),
            "pixel_spacing_mm": patch.pixel_spacing_mm is None or _in_range(patch.pixel_spacing_mm, *SPACING_RANGE_MM),
            "inserted_positives": 0 <= self.inserted_positives <= MAX_INSERTED_POSITIVES,
            "pretrain_steps": 0 <= self.pretrain_steps <= 1_000_000,
            "pretrain_learning_rate": _in_range(self.pretrain_learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True),
            "max_false_marks_per_image": _in_range(self.max_false_marks_per_image, 0.0, MAX_FALSE_MARKS_PER_IMAGE),
            "operating_point_normal_women": 0 <= self.operating_point_normal_women <= 100_000,
            "operating_point_min_normal_films": 0 <= self.operating_point_min_normal_films <= 100_000,
            "ensemble_members": 1 <= self.ensemble_members <= MAX_ENSEMBLE_MEMBERS,
        }
        values = self.to_dict()
        for name, ok in checks.items():
            if not ok:
                raise PlaidInputError(f"training option {name}={values[name]!r} is out of range")
        if self.operating_point not in OPERATING_POINTS:
            raise PlaidInputError(f"training option operating_point={self.operating_point!r} is not one of "
                                  f"{', '.join(OPERATING_POINTS)}")
        unknown = unknown_model_option(self.architecture, self.input_filter)
        if unknown:
            raise PlaidInputError(f"training option {unknown}")
        if self.frozen_layers and self.architecture != DEFAULT_ARCHITECTURE:
            raise PlaidInputError(f"training option frozen_layers={self.frozen_layers} counts Keras ResNet50 layers; "
                                  f"with architecture={self.architecture!r} set frozen_layers to 0")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise PlaidInputError(f"training option device={self.device!r} is not a device (auto, cpu, cuda, "
                                      "cuda:1, ...)") from None
        return self


def flat_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with a nested ``patch_settings`` mapping lifted to the flat patch options (flat keys win)."""
    flat = dict(values)
    nested = flat.pop(PATCH_SETTINGS, None)
    if isinstance(nested, PatchSettings):
        nested = asdict(nested)
    if isinstance(nested, Mapping):
        for name in PATCH_OPTIONS:
            if flat.get(name) is None and nested.get(name) is not None:
                flat[name] = nested[name]
    return flat


def _in_range(value: float, low: float, high: float, low_open: bool = False) -> bool:
    """Whether ``value`` is a finite number in [low, high] (or (low, high] with ``low_open``)."""
    if not math.isfinite(value):
        return False
    return (low < value if low_open else low <= value) and value <= high

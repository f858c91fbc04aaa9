"""`TrainConfig`: every training option, its limits, and how it is read from flags, recipes, requests and stored
runs (patch options flat outside, one `PatchSettings` inside)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

import torch

from plaid.errors import PlaidInputError
from plaid.model.input_filter import DEFAULT_INPUT_FILTER, INPUT_FILTERS
from plaid.model.network import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    DEFAULT_FROZEN_LAYERS,
    PatchClassifier,
    unknown_model_option,
)
from plaid.options import BOUNDS, Bounds, OptionDoc, dataclass_from_mapping, field_doc, option, option_fields
from plaid.patches.prepared import PatchSettings
from plaid.train.operating_point import DEFAULT_MIN_NORMAL_FILMS, FALSE_MARKS, OPERATING_POINTS

# Upper bounds on what a client may ask for: beyond them Adam diverges or a request ties the server up for days.
MAX_LEARNING_RATE = 0.1
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096
MAX_NEGATIVE_RATIO = 100.0
MAX_NEGATIVES_PER_IMAGE = 10_000_000
MAX_INSERTED_POSITIVES = 100_000
MAX_FALSE_MARKS_PER_IMAGE = 1000.0
MAX_ENSEMBLE_MEMBERS = 32
MAX_WORKERS = 256
MAX_PRETRAIN_STEPS = 1_000_000
MAX_NORMAL_COUNT = 100_000
SEED_LIMIT = 2**32


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
    `PatchSettings`; its options are given and stored flat (``patch_size``, ``stride``, ... see `PATCH_OPTIONS`).
    Each option's help, bounds and default are its field's (`plaid.options.option`): `validate` checks the
    bounds, and argparse help and the docs' tables are made from them."""

    patch_settings: PatchSettings = field(default_factory=PatchSettings)
    epochs: int = option(120, help="training epochs", bounds=Bounds(1, MAX_EPOCHS))
    batch_size: int = option(32, help="patches per training batch (per GPU with `multi_gpu`)",
                             bounds=Bounds(1, MAX_BATCH_SIZE))
    learning_rate: float = option(1e-4, help="Adam learning rate", bounds=Bounds(0.0, MAX_LEARNING_RATE, low_open=True))
    frozen_layers: int = option(
        DEFAULT_FROZEN_LAYERS, help="how many of ResNet50's first layers (counted as Keras counts them) stay frozen",
        bounds=Bounds(0, keras_layer_count, high_text="ResNet50's Keras layer count"),
        notes="Only layers loaded from pretrained weights freeze: from random initialisation every layer trains. "
              "Another `architecture` needs 0")
    negative_ratio: float = option(1.0, help="normal patches drawn per calcified patch in each epoch",
                                   bounds=Bounds(0.0, MAX_NEGATIVE_RATIO, low_open=True))
    redraw_negatives: bool = option(True, help="draw new normal patches every epoch; false keeps the first epoch's "
                                    "draw for the whole run")
    max_negatives_per_image: int | None = option(None, help="at most this many normal patches drawn from one image "
                                                 "per epoch", bounds=Bounds(1, MAX_NEGATIVES_PER_IMAGE))
    val_fraction: float = option(0.05, help="share of patients held out for validation",
                                 bounds=Bounds(0.0, 1.0, high_open=True))
    seed: int = option(0, help="seed of the splits and of the patch sampling",
                       bounds=Bounds(0, SEED_LIMIT, high_open=True, high_text="2**32"))
    pretrained: bool = option(True, help="start from pretrained backbone weights (`weights_path`, else "
                              "torchvision's ImageNet weights); false starts from random weights")
    weights_path: str | None = option(None, help="pretrained backbone weights file (torchvision ImageNet, or "
                                      "`plaid pretrain` output)", shown_default="torch hub cache")
    offline: bool = option(False, help="never download weights (also `PLAID_OFFLINE=1`)")
    device: str = option("auto", help="torch device: `auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`")
    amp: bool = option(True, help="on CUDA, train in bf16 autocast (fp16 with a loss scaler where the GPU has no "
                       "bf16)", notes="A CPU trains in fp32 either way, so any CPU gives the same model")
    augment: bool = option(True, help="flip and rotate training patches at random")
    num_workers: int = option(0, help="worker processes building training batches (0: the training process)",
                              bounds=Bounds(0, MAX_WORKERS))
    multi_gpu: bool = option(False, help="one `torch.distributed` process per visible GPU (nccl, "
                             "DistributedDataParallel); rank 0 alone writes checkpoints")
    init_checkpoint: str | None = option(None, help="checkpoint whose weights training starts from (fine-tuning)",
                                         notes="The app sets it from `finetune` and ignores it as a `--conf` key")
    class_weighted_loss: bool = option(False, help="weigh the calcified patches by `negative_ratio` in the loss")
    inserted_positives: int = option(
        0, help="per epoch, this many normal tissue patches with a synthetic calcification cluster pasted in",
        bounds=Bounds(0, MAX_INSERTED_POSITIVES),
        notes="`plaid.train.insertion`: specks of 0.1-1 mm drawn by `plaid.synth`, scaled by the film's spacing, "
              "their contrast raised until each stands out from its tissue")
    tta_flips: bool = option(False, help="score each patch as the mean over it and its three flips (stored with "
                             "the model; 4x the inference time)")
    architecture: str = option(DEFAULT_ARCHITECTURE, help="torchvision ResNet backbone", choices=ARCHITECTURES,
                               notes="`resnet18` needs about a third of ResNet50's CPU time per step at 64 "
                                     "pixels. Stored in the checkpoint; fine-tuning refuses a published model of "
                                     "another backbone")
    input_filter: str = option(
        DEFAULT_INPUT_FILTER, help="fixed front end inside the model", choices=INPUT_FILTERS,
        notes="`none`: the grey patch copied to 3 channels (the paper's). `contrast`: grey, grey minus its Gaussian "
              "blur (sigma 4 pixels) and a difference of Gaussians (sigma 0.8 and 2 pixels) that brings out specks "
              "of 1-4 pixels. Part of the model, so training, inference and the exported runtimes apply it alike. On "
              "mini-MIAS it did not help by itself; it is what lets `pretrain_steps` learn")
    pretrain_steps: int = option(
        0, help="from random initialisation: Adam steps telling the training images' normal patches from copies "
                "with a synthetic cluster pasted in, before the epochs", bounds=Bounds(0, MAX_PRETRAIN_STEPS),
        notes="Uses the training patients only (cross-validation folds never see their test women); needs the "
              "`contrast` front end to learn in a few hundred steps; skipped when weights are loaded. The head "
              "keeps what it learnt, and `train_config.json` records the start under `initialisation`")
    pretrain_learning_rate: float = option(1e-3, help="Adam learning rate of the `pretrain_steps`",
                                           bounds=Bounds(0.0, MAX_LEARNING_RATE, low_open=True))
    operating_point: str = option(
        FALSE_MARKS, help="how the stored threshold is chosen", choices=OPERATING_POINTS,
        notes="`false_marks`: the lowest threshold marking at most `max_false_marks_per_image` normal patches per "
              "validation film, scored as the predictor serves them. `slope1`: the paper's slope-1 point on the "
              "validation patches. The checkpoint records the point, the films that chose it and the false marks "
              "per film it gave")
    max_false_marks_per_image: float = option(1.0, help="false marks per film the `false_marks` operating point "
                                              "allows", bounds=Bounds(0.0, MAX_FALSE_MARKS_PER_IMAGE))
    operating_point_normal_women: int = option(
        2, help="women without calcification moved from training to validation until it holds this many, so the "
                "threshold is chosen on films the model never trained on", bounds=Bounds(0, MAX_NORMAL_COUNT))
    operating_point_min_normal_films: int = option(
        DEFAULT_MIN_NORMAL_FILMS, bounds=Bounds(0, MAX_NORMAL_COUNT),
        help="warn (log, checkpoint, every report) when fewer films without calcification than this choose the "
             "threshold")
    ensemble_members: int = option(
        1, help="train this many models (seeds `seed`, `seed`+1, ...) on one split and serve the mean of their "
                "probabilities as one checkpoint", bounds=Bounds(1, MAX_ENSEMBLE_MEMBERS),
        notes="The members share one pretext (`pretrain_steps`); training and inference time grow with it")

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
        values = self.to_dict()
        for name, bounds in option_bounds().items():
            if not bounds.contains(values[name]):
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


def option_bounds() -> dict[str, Bounds]:
    """The bounds of every bounded training option, by its flat name (patch options first)."""
    found = {name: item for name, item in option_fields(PatchSettings).items() if name in PATCH_OPTIONS}
    found.update(option_fields(TrainConfig))
    return {name: item.metadata[BOUNDS] for name, item in found.items() if item.metadata.get(BOUNDS)}


def option_field(name: str) -> Field:
    """The field describing training option ``name`` (a flat patch option's is `PatchSettings`')."""
    return option_fields(PatchSettings if name in PATCH_OPTIONS else TrainConfig)[name]


def option_docs_flat() -> list[OptionDoc]:
    """The table rows of every training option, in `TrainConfig.option_names` order."""
    return [field_doc(option_field(name), name) for name in TrainConfig.option_names()]


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

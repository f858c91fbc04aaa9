"""ResNet50 patch classifier: grayscale input, ImageNet normalisation, single-logit head, Keras-style freezing.

Freezing "the first N layers" follows the paper, which used Keras' ResNet50. Keras counts every
operation as a layer (input, padding, conv, batch-norm, activation, pooling, add), so `keras_layers`
lists torchvision's modules in Keras' order with parameter-free placeholders where Keras has a layer
torchvision folds away. Keras' ``model.layers[:100]`` ends at ``conv4_block2_3_conv``, so the default
N = 100 freezes the stem, layer1, layer2, layer3[0] and layer3[1] up to and including its conv3, and
trains everything from layer3[1].bn3 on plus the new head. Frozen
batch-norm layers also keep their ImageNet running statistics (they stay in eval mode), as Keras does
for non-trainable batch-norm layers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights, resnet18, resnet34, resnet50
from torchvision.models.resnet import Bottleneck

from plaid.errors import PlaidInputError
from plaid.model.input_filter import DEFAULT_INPUT_FILTER, INPUT_FILTERS, build_input_filter
from plaid.options import require_choice, unknown_choice

logger = logging.getLogger(__name__)

DEFAULT_FROZEN_LAYERS = 100
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_ARCHITECTURE = "resnet50"
# Backbones a model may use, with their torchvision ImageNet weights (newest first). Keras-counted freezing
# is defined for the paper's resnet50 only.
ARCHITECTURES = {
    "resnet50": (resnet50, (ResNet50_Weights.IMAGENET1K_V2, ResNet50_Weights.IMAGENET1K_V1)),
    "resnet34": (resnet34, (ResNet34_Weights.IMAGENET1K_V1,)),
    "resnet18": (resnet18, (ResNet18_Weights.IMAGENET1K_V1,)),
}


def unknown_model_option(architecture: str, input_filter: str) -> str | None:
    """``name=value is unknown (known: ...)`` for the first of ``architecture`` and ``input_filter`` that is not
    a known backbone or front end, else None."""
    return unknown_choice("architecture", architecture, ARCHITECTURES) or unknown_choice("input_filter", input_filter,
                                                                                       INPUT_FILTERS)


def check_architecture(name: str) -> str:
    """``name`` when it is a known backbone, else ValueError naming it and the known ones."""
    return require_choice("architecture", name, ARCHITECTURES)


class PatchClassifier(nn.Module):
    """Maps (N, 1, H, W) patches with intensities in [0, 1] to one calcification logit each.

    ``input_filter`` names the fixed front end that makes the three input channels (`plaid.model.input_filter`);
    ``architecture`` the torchvision ResNet backbone (Keras-counted freezing exists for resnet50 only).
    """

    def __init__(self, frozen_layers: int = DEFAULT_FROZEN_LAYERS, architecture: str = DEFAULT_ARCHITECTURE,
                 input_filter: str = DEFAULT_INPUT_FILTER) -> None:
        super().__init__()
        self.architecture = check_architecture(architecture)
        self.input_filter_name = input_filter
        self.input_filter = build_input_filter(input_filter)
        self.backbone = ARCHITECTURES[architecture][0](weights=None)
        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.frozen_layers = 0
        self.frozen_bn_eval = True
        self.initialisation = "random"
        self.freeze_first_layers(frozen_layers)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (N,) for patches of shape (N, 1, H, W) or (N, 3, H, W)."""
        patches = self.input_filter(patches)
        normalised = (patches - self.mean.to(patches.dtype)) / self.std.to(patches.dtype)
        if self.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            normalised = normalised.contiguous(memory_format=torch.channels_last)
        return self.backbone(normalised).squeeze(1)

    def keras_layers(self) -> list[tuple[str, nn.Module | None]]:
        """The backbone's layers in the order and granularity Keras' ResNet50 counts them (resnet50 only)."""
        if self.architecture != "resnet50":
            raise ValueError(f"Keras layer counting is defined for resnet50 only, not {self.architecture}")
        net = self.backbone
        layers: list[tuple[str, nn.Module | None]] = [
            ("input", None), ("conv1_pad", None), ("conv1", net.conv1), ("bn1", net.bn1), ("relu", None),
            ("pool1_pad", None), ("maxpool", None),
        ]
        for stage_name in ("layer1", "layer2", "layer3", "layer4"):
            for block_number, block in enumerate(getattr(net, stage_name)):
                layers.extend(_bottleneck_keras_layers(f"{stage_name}.{block_number}", block))
        return layers

    def freeze_first_layers(self, count: int) -> None:
        """Freeze the first ``count`` Keras-counted layers; unfreeze all others (head always trains).

        Other backbones than resnet50 accept only ``count`` 0 (every layer trains)."""
        if count == 0 and self.architecture != "resnet50":
            layers: list[tuple[str, nn.Module | None]] = []
        else:
            layers = self.keras_layers()
        if not 0 <= count <= len(layers):
            raise ValueError(f"frozen layers must be between 0 and {len(layers)}, got {count}")
        for parameter in self.parameters():
            parameter.requires_grad = True
        for _, module in layers[:count]:
            if module is not None:
                for parameter in module.parameters():
                    parameter.requires_grad = False
        self.frozen_layers = count
        self.train(self.training)

    def frozen_batchnorms(self) -> list[nn.BatchNorm2d]:
        """Batch-norm layers whose parameters are frozen."""
        return [
            module for module in self.modules()
            if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters())
        ]

    def train(self, mode: bool = True) -> PatchClassifier:
        """Switch train/eval mode, keeping frozen batch-norm layers in eval mode.

        With random initialisation (no ImageNet statistics to keep) ``frozen_bn_eval`` is False and
        frozen batch-norm layers still track the data's statistics, else activations explode.
        """
        super().train(mode)
        if mode and self.frozen_bn_eval:
            for module in self.frozen_batchnorms():
                module.eval()
        return self


def _bottleneck_keras_layers(prefix: str, block: Bottleneck) -> list[tuple[str, nn.Module | None]]:
    """A bottleneck block in Keras' order: the projection shortcut conv sits before conv3."""
    layers: list[tuple[str, nn.Module | None]] = [
        (f"{prefix}.conv1", block.conv1), (f"{prefix}.bn1", block.bn1), (f"{prefix}.relu1", None),
        (f"{prefix}.conv2", block.conv2), (f"{prefix}.bn2", block.bn2), (f"{prefix}.relu2", None),
    ]
    if block.downsample is not None:
        layers += [
            (f"{prefix}.downsample.0", block.downsample[0]), (f"{prefix}.conv3", block.conv3),
            (f"{prefix}.downsample.1", block.downsample[1]), (f"{prefix}.bn3", block.bn3),
        ]
    else:
        layers += [(f"{prefix}.conv3", block.conv3), (f"{prefix}.bn3", block.bn3)]
    layers += [(f"{prefix}.add", None), (f"{prefix}.out", None)]
    return layers


def imagenet_weight_candidates(architecture: str = DEFAULT_ARCHITECTURE) -> list[Path]:
    """Where torchvision's ImageNet weights of ``architecture`` sit when already downloaded (torch hub cache)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / Path(weights.url).name for weights in ARCHITECTURES[architecture][1]]


def load_imagenet_weights(model: PatchClassifier, weights_path: str | Path | None = None) -> Path | None:
    """Initialise the backbone from local pretrained weights (ImageNet, or `plaid pretrain`) without any download.

    An explicit ``weights_path`` must be used: a file that is missing, unreadable or made for another
    backbone raises `PlaidInputError` naming it. Without one, torchvision's cache is searched; returns the
    file used, or None (after one warning) when none is usable, and the model keeps its random initialisation.
    """
    if weights_path:
        path = Path(weights_path).expanduser()
        problem = _weights_problem(model, path)
        if problem:
            raise PlaidInputError(f"pretrained weights (--weights / pretrained_weights) {problem}", path)
        logger.info("initialised %s from pretrained weights %s", model.architecture, path)
        return path
    for candidate in imagenet_weight_candidates(model.architecture):
        if not candidate.is_file():
            continue
        problem = _weights_problem(model, candidate)
        if problem:
            logger.warning("skipping %s: %s", candidate, problem)
            continue
        logger.info("initialised %s from pretrained weights %s", model.architecture, candidate)
        return candidate
    logger.warning(
        "no pretrained %s weights found on disk (looked in: %s). Put torchvision's ImageNet weights file in the "
        "torch hub cache, pass a weights path (ImageNet or `plaid pretrain` output), or allow the download.",
        model.architecture,
        ", ".join(str(c) for c in imagenet_weight_candidates(model.architecture)),
    )
    return None


def _weights_problem(model: PatchClassifier, path: Path) -> str | None:
    """Load the backbone weights in ``path`` into ``model``; None on success, else what is wrong with the file."""
    if not path.is_file():
        return "does not exist" if not path.exists() else "is not a file"
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            return f"holds a {type(state).__name__}, not a state dict"
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except Exception as exc:  # corrupt, truncated or foreign: reported to the caller with the file's name
        return f"cannot be read ({type(exc).__name__}: {exc})"
    missing = [key for key in missing if not key.startswith("fc.")]
    if missing or unexpected:
        return f"does not fit {model.architecture} (missing {len(missing)}, unexpected {len(unexpected)} keys)"
    return None


def offline_mode(offline: bool = False) -> bool:
    """True when nothing may be downloaded: ``offline`` set, or PLAID_OFFLINE=1 in the environment."""
    from plaid.options import parse_bool

    return bool(offline) or parse_bool(os.environ.get("PLAID_OFFLINE", "0"))


def fetch_imagenet_weights(model: PatchClassifier) -> Path | None:
    """Download torchvision's ImageNet ResNet50 weights into the torch hub cache (as torchvision does) and
    load them; None (after a warning) when the download fails."""
    weights = ARCHITECTURES[model.architecture][1][0]
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as exc:  # no network, proxy, disk full: train without them
        logger.warning("could not download ImageNet weights %s (%s: %s)", weights.url, type(exc).__name__, exc)
        return None
    model.backbone.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    logger.info("initialised %s from downloaded ImageNet weights %s", model.architecture, path)
    return path


def build_model(
    frozen_layers: int = DEFAULT_FROZEN_LAYERS, pretrained: bool = True, weights_path: str | Path | None = None,
    offline: bool = False, architecture: str = DEFAULT_ARCHITECTURE, input_filter: str = DEFAULT_INPUT_FILTER,
) -> PatchClassifier:
    """A new patch classifier, initialised from pretrained weights where possible.

    Local weights (``weights_path``, then the torch hub cache) come first; when none exist and downloads
    are allowed (see `offline_mode`), torchvision's ImageNet weights are fetched. Layers are frozen only
    when they were loaded from pretrained weights: from random initialisation every layer trains.
    ``model.initialisation`` records where the weights came from.
    """
    model = PatchClassifier(frozen_layers=0, architecture=architecture, input_filter=input_filter)
    loaded = load_imagenet_weights(model, weights_path) if pretrained else None
    if pretrained and loaded is None and not offline_mode(offline):
        loaded = fetch_imagenet_weights(model)
    model.frozen_bn_eval = loaded is not None
    model.initialisation = f"pretrained:{loaded}" if loaded is not None else "random"
    if loaded is None and frozen_layers:
        logger.warning("no pretrained weights loaded: no layer is frozen (frozen_layers %d applies only to "
                       "pretrained layers); every layer trains from random initialisation", frozen_layers)
        frozen_layers = 0
    model.freeze_first_layers(frozen_layers)
    return model

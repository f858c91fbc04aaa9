"""Fixed (non-trainable) front ends that turn a grey patch into the backbone's three input channels.

``none`` is the paper's input: the grey patch replicated to three channels. ``contrast`` keeps the grey
patch as the first channel and adds two band-pass channels at the scale of calcifications, so broad bright
structures (dense fibroglandular tissue) fade while small bright specks stand out:

- channel 2: grey minus a Gaussian blur of sigma 4 pixels (local contrast against the surrounding tissue);
- channel 3: a difference of Gaussians, sigma 0.8 minus sigma 2 pixels (specks of about 1-4 pixels).

The sigmas are in pixels of the image the model sees, i.e. after `target_spacing_mm` resampling when the
model was trained with one; at mini-MIAS' 200 µm they are 0.16-0.8 mm. Each band-pass channel is scaled by a
fixed gain and centred on 0.5 so all three channels share the [0, 1] range of the grey one before the
ImageNet normalisation. The filter is part of the model's ``forward``, so training, the predictor, the app
and the exported ONNX / OpenVINO runtimes all apply it by construction.

The filter always computes in fp32, also under bf16 / fp16 autocast: the band-pass channels are small
differences of blurs, which bf16's 8-bit mantissa would round away (the speck channel lost about an eighth
of its spread), so a model trained on a CPU with native bf16 would see other inputs than one trained without.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plaid.options import require_choice

NONE = "none"
CONTRAST = "contrast"
INPUT_FILTERS = (NONE, CONTRAST)
DEFAULT_INPUT_FILTER = NONE
LOCAL_CONTRAST_SIGMA = 4.0
SPECK_SIGMAS = (0.8, 2.0)
BAND_GAINS = (4.0, 8.0)  # local contrast, specks: brings both near the grey channel's spread on film


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian kernel reaching 3 sigma on each side."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of (N, 1, H, W) tensors with edge-replicating borders."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        kernel = gaussian_kernel(sigma)
        self.radius = (kernel.numel() - 1) // 2
        self.register_buffer("rows", kernel.view(1, 1, -1, 1), persistent=False)
        self.register_buffer("cols", kernel.view(1, 1, 1, -1), persistent=False)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """The blurred patches, same shape as ``grey``."""
        r = self.radius
        padded = F.pad(grey, (r, r, r, r), mode="replicate")
        blurred = F.conv2d(padded, self.rows.to(grey.dtype))
        return F.conv2d(blurred, self.cols.to(grey.dtype))


class GreyToRGB(nn.Module):
    """The paper's input: the grey patch replicated to three channels."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, 3, H, W); three-channel input passes through."""
        return patches.expand(-1, 3, -1, -1) if patches.shape[1] == 1 else patches


class ContrastChannels(nn.Module):
    """Grey, local contrast (grey minus its sigma-4 blur) and speck band-pass (DoG 0.8 - 2 pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.surround = GaussianBlur(LOCAL_CONTRAST_SIGMA)
        self.fine = GaussianBlur(SPECK_SIGMAS[0])
        self.coarse = GaussianBlur(SPECK_SIGMAS[1])

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) grey patches in [0, 1] -> (N, 3, H, W) float32, whatever autocast is in force."""
        grey = (patches[:, :1] if patches.shape[1] == 3 else patches).float()
        with torch.autocast(grey.device.type, enabled=False):
            local = grey - self.surround(grey)
            specks = self.fine(grey) - self.coarse(grey)
            return torch.cat([grey, 0.5 + BAND_GAINS[0] * local, 0.5 + BAND_GAINS[1] * specks], dim=1)


def check_input_filter(name: str) -> str:
    """``name`` when it is a known input filter, else ValueError naming it and the known ones."""
    return require_choice("input_filter", name, INPUT_FILTERS)


def build_input_filter(name: str = DEFAULT_INPUT_FILTER) -> nn.Module:
    """The fixed front end called ``name`` (see the module docstring); it has no trainable parameter."""
    module = ContrastChannels() if check_input_filter(name) == CONTRAST else GreyToRGB()
    for parameter in module.parameters():
        parameter.requires_grad = False
    return module

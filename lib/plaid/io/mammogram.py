"""The in-memory mammogram: pixels in the file's own units plus what the file says about them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageMeta:
    """What PLAID knows about a mammogram besides its pixels."""

    path: str = ""
    file_format: str = ""
    pixel_spacing_mm: tuple[float, float] | None = None
    laterality: str | None = None
    view: str | None = None
    patient_id: str | None = None
    age_years: float | None = None
    photometric: str | None = None
    bits_stored: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the metadata as plain JSON-serialisable values."""
        values = asdict(self)
        if self.pixel_spacing_mm is not None:
            values["pixel_spacing_mm"] = list(self.pixel_spacing_mm)
        return values


@dataclass
class Mammogram:
    """A single 2-D mammogram: float32 pixels (bright = dense) in original units, plus metadata."""

    pixels: np.ndarray
    meta: ImageMeta

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

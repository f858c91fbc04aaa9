"""Overlay PNGs for people: the mammogram downscaled for display only, positive patches outlined.

With a ground truth the PNG shows two panels side by side, as the paper's Figure 7: ground truth on
the left (green), prediction on the right (red). Inputs are full-resolution; only the picture is small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from plaid.io.images import normalise_intensity

PREDICTION_COLOUR = (255, 40, 40)
TRUTH_COLOUR = (40, 220, 40)
HEADER_PX = 22
GAP_PX = 8

Marks = np.ndarray | Sequence[Sequence[float]]


def display_factor(shape: tuple[int, int], max_side: int) -> int:
    """Integer downscale factor so the longer side fits in ``max_side`` pixels."""
    return max(1, math.ceil(max(shape) / max(1, max_side)))


def downscale_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Block-wise 'any' downscale, so marks of a single pixel stay visible."""
    mask = np.asarray(mask) != 0
    if factor == 1:
        return mask
    height, width = mask.shape
    padded = np.pad(mask, ((0, -height % factor), (0, -width % factor)))
    rows, cols = padded.shape[0] // factor, padded.shape[1] // factor
    return padded.reshape(rows, factor, cols, factor).any(axis=(1, 3))


def display_image(pixels: np.ndarray, factor: int) -> Image.Image:
    """The mammogram as an 8-bit RGB picture, ``factor`` times smaller (area-averaged)."""
    gray = np.rint(normalise_intensity(np.asarray(pixels, dtype=np.float32)) * 255).astype(np.uint8)
    picture = Image.fromarray(gray)
    if factor > 1:
        size = (math.ceil(gray.shape[1] / factor), math.ceil(gray.shape[0] / factor))
        picture = picture.resize(size, Image.Resampling.BOX)
    return picture.convert("RGB")


def _as_marks(marks: Marks | None, shape: tuple[int, int], name: str) -> np.ndarray | list | None:
    """A boolean mask with the image's shape, or a list of boxes; anything else is an error."""
    if marks is None:
        return None
    if isinstance(marks, np.ndarray) and marks.ndim == 2 and marks.shape == tuple(shape):
        return marks != 0
    boxes = np.asarray(marks, dtype=np.float64).reshape(-1, 4) if len(marks) else np.zeros((0, 4))
    if isinstance(marks, np.ndarray) and marks.ndim == 2 and marks.shape[1] != 4:
        raise ValueError(f"{name} mask of shape {marks.shape} does not match the image {tuple(shape)}")
    return boxes.tolist()


def _draw_marks(picture: Image.Image, marks: np.ndarray | list | None, factor: int,
                colour: tuple[int, int, int], fill_mask: bool) -> Image.Image:
    """Outline boxes, or the boundary of a mask (also filled when ``fill_mask``), on ``picture``."""
    if marks is None:
        return picture
    if isinstance(marks, np.ndarray):
        small = downscale_mask(marks, factor)[: picture.height, : picture.width]
        array = np.asarray(picture).copy()
        if fill_mask:
            region = ndimage.binary_dilation(small, iterations=1)
            array[region] = (0.45 * array[region] + 0.55 * np.array(colour)).astype(np.uint8)
            edge = ndimage.binary_dilation(region, iterations=1) & ~region
        else:
            edge = small & ~ndimage.binary_erosion(small, iterations=2, border_value=0)
        array[edge] = colour
        return Image.fromarray(array)
    draw = ImageDraw.Draw(picture)
    for top, left, bottom, right in marks:
        box = [left / factor, top / factor, max(left / factor, right / factor - 1),
               max(top / factor, bottom / factor - 1)]
        draw.rectangle(box, outline=colour, width=2)
    return picture


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _with_header(panel: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (panel.width, panel.height + HEADER_PX), (0, 0, 0))
    out.paste(panel, (0, HEADER_PX))
    ImageDraw.Draw(out).text((4, 3), text, fill=(255, 255, 255), font=_font())
    return out


def render_overlay(
    pixels: np.ndarray,
    positives: Marks | None,
    out_png: str | Path,
    ground_truth: Marks | None = None,
    title: str | None = None,
    max_side: int = 1024,
) -> Path:
    """Write an overlay PNG and return its path.

    ``positives`` and ``ground_truth`` are each either a mask with the image's shape (non-zero = marked)
    or a list of (top, left, bottom, right) boxes in full-resolution pixels. Predictions are drawn in red;
    a ground-truth mask is filled and outlined in green (so single-pixel specks stay visible), ground-truth
    boxes are outlined in green. ``max_side`` bounds each panel's longer side.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    shape = (int(pixels.shape[0]), int(pixels.shape[1]))
    predicted_marks = _as_marks(positives, shape, "positives")
    truth_marks = _as_marks(ground_truth, shape, "ground_truth")
    factor = display_factor(shape, max_side)
    base = display_image(pixels, factor)
    predicted = _draw_marks(base.copy(), predicted_marks, factor, PREDICTION_COLOUR, fill_mask=False)
    if ground_truth is None:
        picture = _with_header(predicted, title or "prediction")
    else:
        truth = _draw_marks(base.copy(), truth_marks, factor, TRUTH_COLOUR, fill_mask=True)
        left, right = _with_header(truth, "ground truth"), _with_header(predicted, "prediction")
        header = HEADER_PX if title else 0
        picture = Image.new("RGB", (left.width + GAP_PX + right.width, left.height + header), (0, 0, 0))
        picture.paste(left, (0, header))
        picture.paste(right, (left.width + GAP_PX, header))
        if title:
            ImageDraw.Draw(picture).text((4, 3), title, fill=(255, 255, 255), font=_font())
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out_png)
    return out_png

"""Typed errors raised by PLAID for bad input, each naming the offending file when there is one."""

from __future__ import annotations

from pathlib import Path


class PlaidError(Exception):
    """Base class of every error PLAID raises on purpose."""


class PlaidInputError(PlaidError, ValueError):
    """Input data that PLAID cannot use; carries the path of the file at fault, if any."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        text = f"{self.path}: {message}" if self.path else message
        super().__init__(text)


class ImageReadError(PlaidInputError):
    """A file is missing, truncated, corrupt, or not an image format PLAID reads."""


class ImageShapeError(PlaidInputError):
    """An image has the wrong number of dimensions or is empty."""


class ImageTooSmallError(PlaidInputError):
    """An image is smaller than one patch in height or width."""


class LabelShapeError(PlaidInputError):
    """An annotation mask does not have the same height and width as its image."""


class ModelNotFoundError(PlaidError, FileNotFoundError):
    """No trained checkpoint exists where one is needed."""


class CheckpointError(PlaidError):
    """A checkpoint exists but cannot be used: corrupt, not a PLAID model, or from an incompatible run."""

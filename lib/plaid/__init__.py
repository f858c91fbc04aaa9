"""PLAID: patch-level detection of breast microcalcifications in full-resolution mammograms."""

__version__ = "0.1.0"

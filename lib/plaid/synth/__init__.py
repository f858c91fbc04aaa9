"""Synthetic mammograms with calcification clusters (tests, demos, inserted positives); off the runtime path."""

"""Evaluation: patch scoring, the paper and realistic protocols, metrics, FROC, bootstrap, plots, overlays, report."""

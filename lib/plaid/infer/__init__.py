"""Inference: the patch predictor and uncertainty scores for active learning."""

"""Evaluation: patch scoring, the headline figures, the paper and realistic protocols, FROC, bootstrap, plots,
overlays, report, cross-validation (the shared measures are in `plaid.metrics`)."""

"""Training: the loop and its configuration, splits and holdout, inserted positives, pretraining, the operating
point, ensembles of seeds."""

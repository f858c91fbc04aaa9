"""Training: the loop and its configuration, splits and holdout, inserted positives, hard negatives, pretraining."""

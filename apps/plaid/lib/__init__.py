"""MONAI Label glue for PLAID: task configs, infer/train tasks, active learning, datastore checks."""

"""MONAI Label glue for PLAID: task configs, infer/train tasks, active learning, scoring,
the server side (`server`) and both datastores (`datastore`)."""

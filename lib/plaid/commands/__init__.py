"""Sub-commands of the `plaid` CLI; each module exposes ``register(subparsers)`` setting ``handler``."""

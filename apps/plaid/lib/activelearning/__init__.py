"""Active learning strategies."""

"""Task configs: one module per model the app can serve."""

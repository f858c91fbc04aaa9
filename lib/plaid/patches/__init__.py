"""From a read image to patches: grid, tissue, patch labels, spacing, balanced sampling, the prepared image."""

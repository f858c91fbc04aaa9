"""From a read image to patches: grid, tissue, patch labels, calcified regions, spacing, balanced sampling, the
prepared image."""

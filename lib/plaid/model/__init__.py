"""The patch classifier: the ResNet50 network, its weights and checkpoints, the device and the inference runtime."""

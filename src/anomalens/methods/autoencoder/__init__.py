"""Reconstruction baseline: a convolutional autoencoder trained on normal images only."""

from anomalens.methods.autoencoder.method import AutoencoderMethod

__all__ = ["AutoencoderMethod"]

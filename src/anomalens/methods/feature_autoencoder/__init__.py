"""Reconstruction in feature space: an autoencoder of the frozen backbone's patch features."""

from anomalens.methods.feature_autoencoder.method import FeatureAutoencoderMethod

__all__ = ["FeatureAutoencoderMethod"]

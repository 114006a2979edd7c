"""A learned patch scorer on frozen features, trained with noise and synthetic defects."""

from anomalens.methods.discriminator.method import Discriminator

__all__ = ["Discriminator"]

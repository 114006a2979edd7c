"""Teacher-student with a global branch: EfficientAD-S's small student and autoencoder."""

from anomalens.methods.efficientad.method import EfficientAD

__all__ = ["EfficientAD"]

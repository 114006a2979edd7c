"""GAN-based reconstruction: f-AnoGAN (WGAN-GP on the references, then an izi_f encoder)."""

from anomalens.methods.fanogan.method import FAnoGAN

__all__ = ["FAnoGAN"]

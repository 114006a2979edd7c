"""Reconstruction baseline: an autoencoder trained on normal images; anomaly = residual."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anomalens.errors import ConfigError
from anomalens.features import MAX_RESOLUTION
from anomalens.methods.autoencoder.model import DOWNSAMPLING, ConvAutoencoder
from anomalens.methods.autoencoder.residual import RESIDUALS
from anomalens.methods.autoencoder.training import TrainingHistory, train
from anomalens.methods.base import Method, PatchScores, top_fraction_mean
from anomalens.validation import ArraySpec, flag, integer, number


class AutoencoderMethod(Method):
    """Pixel anomaly = reconstruction residual of a convolutional autoencoder trained from
    scratch on the normal images; image score = mean of the top 1% pixel residuals.

    Args:
        resolution: images are resized to this square side (a multiple of 32) in pixels.
        variational: train a variational autoencoder instead of a plain one.
        residual: "l2" (squared colour difference) or "ssim" (1 - SSIM) per pixel; the network
            is trained to minimise the mean of the same residual.
        width: channels of the network's first layer (its capacity grows with the square).
        latent_channels: channels of the code at 1/32 of the resolution.
        epochs: most training epochs; training stops earlier when the loss stops improving.
        batch_size: images per optimisation step.
        learning_rate: Adam's learning rate.
        patience: epochs without improvement before training stops.
        augment: train on randomly flipped, shifted, rotated and brightness-jittered copies.
        seed: seeds weight initialisation, shuffling and augmentation.
    """

    name = "autoencoder"

    def __init__(
        self,
        resolution: int = 128,
        variational: bool = False,
        residual: str = "l2",
        width: int = 32,
        latent_channels: int = 16,
        epochs: int = 25,
        batch_size: int = 16,
        learning_rate: float = 2e-3,
        patience: int = 5,
        augment: bool = True,
        seed: int = 0,
    ):
        resolution = integer("resolution", resolution, maximum=MAX_RESOLUTION)
        if resolution < DOWNSAMPLING or resolution % DOWNSAMPLING:
            raise ConfigError(f"resolution must be a multiple of {DOWNSAMPLING}, got {resolution}")
        if residual not in RESIDUALS:
            raise ConfigError(f"residual must be one of {sorted(RESIDUALS)}, got {residual!r}")
        flag("variational", variational), flag("augment", augment)
        integer("width", width, minimum=1), integer("latent_channels", latent_channels, minimum=1)
        integer("epochs", epochs, minimum=1), integer("batch_size", batch_size, minimum=1)
        integer("patience", patience, minimum=1), integer("seed", seed)
        number("learning_rate", learning_rate, above=0)
        self.resolution = resolution
        self.variational = variational
        self.residual = residual
        self.width = width
        self.latent_channels = latent_channels
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.augment = augment
        self.seed = seed
        self.network = ConvAutoencoder(width, latent_channels, variational).eval()
        self.history: TrainingHistory | None = None

    def config(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "variational": self.variational,
            "residual": self.residual,
            "width": self.width,
            "latent_channels": self.latent_channels,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "patience": self.patience,
            "augment": self.augment,
            "seed": self.seed,
        }

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.network = ConvAutoencoder(self.width, self.latent_channels, self.variational)
            self.history = train(
                self.network,
                self.prepare(images),
                RESIDUALS[self.residual],
                self.epochs,
                self.batch_size,
                self.learning_rate,
                self.patience,
                self.augment,
                progress,
            )

    @torch.inference_mode()
    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = self.prepare(chunk)
            residuals = RESIDUALS[self.residual](batch, self.network(batch)[0]).numpy()
            for image, residual in zip(chunk, residuals, strict=True):
                size = image.shape[:2]
                results.append(
                    PatchScores(
                        grid=residual.astype(np.float32),
                        extent=(float(size[0]), float(size[1])),
                        image_size=size,
                        image_score=top_fraction_mean(residual),
                    )
                )
        return results

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Two-fold cross-fitting, then a fit on all `images`.

        Each half of the images (alternate images) is scored by a network trained on the other
        half only, so every held-out score comes from a network that never saw that image, at
        about twice the cost of one fit (the default five folds would cost six). Networks fitted
        on half the images reconstruct a little worse, which errs towards fewer false alarms.
        """
        if len(images) < 2:
            raise ValueError("held-out scores need at least two images")
        halves = (images[0::2], images[1::2])
        held_out = []
        for scored, trained in (halves, halves[::-1]):
            model = type(self)(**self.config())
            model.fit(trained, progress)
            held_out.append(model.score(scored))
        self.fit(images, progress)
        return [held_out[index % 2][index // 2] for index in range(len(images))]

    def state(self) -> dict[str, np.ndarray]:
        return {name: value.numpy().copy() for name, value in self.network.state_dict().items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        network = ConvAutoencoder(self.width, self.latent_channels, self.variational)
        network.load_state_dict({name: torch.from_numpy(value) for name, value in arrays.items()})
        self.network = network.eval()

    def state_spec(self) -> dict[str, ArraySpec]:
        return {
            name: ArraySpec(tuple(value.shape), str(value.numpy().dtype))
            for name, value in self.network.state_dict().items()
        }

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, S, S) float tensor in [0, 1] of RGB uint8 `images` resized to the resolution."""
        side = (self.resolution, self.resolution)
        return torch.cat(
            [
                F.interpolate(
                    torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None],
                    size=side,
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                for image in images
            ]
        )

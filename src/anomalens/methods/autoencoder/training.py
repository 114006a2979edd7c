"""Training the autoencoder on normal images: augmentation, early stopping, progress bar."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from anomalens.methods.autoencoder.model import ConvAutoencoder

MAX_ROTATION_DEGREES = 5.0
MAX_SHIFT = 0.04
"""Largest random shift, as a fraction of the image side."""
MAX_BRIGHTNESS_CHANGE = 0.05
MAX_CONTRAST_CHANGE = 0.05
KL_WEIGHT = 1e-3
"""Weight of the variational code's KL divergence against the reconstruction loss."""
MIN_IMPROVEMENT = 1e-3
"""Relative loss decrease that counts as an improvement for early stopping."""
MIN_SAMPLES_PER_EPOCH = 96
"""A few references are cycled through (each copy augmented anew) until an epoch has this many
samples, so that a handful of images still gets enough optimisation steps."""


@dataclass
class TrainingHistory:
    """What happened while training.

    Attributes:
        losses: mean training loss of each epoch.
        best_epoch: index of the epoch whose weights were kept (the lowest loss).
    """

    losses: list[float] = field(default_factory=list)
    best_epoch: int = 0


def augment(batch: torch.Tensor) -> torch.Tensor:
    """Random flips, small shifts and rotations, slight brightness and contrast changes.

    Args:
        batch: (B, 3, S, S) images in [0, 1]; the global torch generator draws the changes.
    """
    count = batch.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape) * 2.0 - 1.0

    batch = torch.where(torch.rand(count, 1, 1, 1) < 0.5, batch.flip(3), batch)
    batch = torch.where(torch.rand(count, 1, 1, 1) < 0.5, batch.flip(2), batch)
    angle = uniform(count) * math.radians(MAX_ROTATION_DEGREES)
    shift = uniform(count, 2) * 2.0 * MAX_SHIFT
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, padding_mode="reflection", align_corners=False)
    contrast = 1.0 + uniform(count, 1, 1, 1) * MAX_CONTRAST_CHANGE
    brightness = 1.0 + uniform(count, 1, 1, 1) * MAX_BRIGHTNESS_CHANGE
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return (((batch - mean) * contrast + mean) * brightness).clamp(0.0, 1.0)


def train(
    model: ConvAutoencoder,
    images: torch.Tensor,
    residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    use_augmentation: bool = True,
    progress: bool = False,
) -> TrainingHistory:
    """Train `model` in place with Adam and keep the weights of its best epoch.

    Randomness (shuffling, augmentation, variational sampling) comes from the global torch
    generator, so seeding it beforehand makes training reproducible.

    Args:
        model: the network, trained in place and left in eval mode.
        images: (N, 3, S, S) normal training images in [0, 1].
        residual: per-pixel residual function; its mean is the reconstruction loss.
        epochs: most epochs: passes over `images`, or cycles through them up to
            MIN_SAMPLES_PER_EPOCH samples.
        batch_size: images per optimisation step.
        learning_rate: Adam's learning rate.
        patience: stop after this many epochs without the loss improving.
        use_augmentation: augment each training batch (see `augment`).
        progress: show a tqdm bar with the loss.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = TrainingHistory()
    best_loss = math.inf
    best_state = {name: value.clone() for name, value in model.state_dict().items()}
    bar = tqdm(range(epochs), desc="autoencoder", unit="epoch", disable=not progress)
    model.train()
    for epoch in bar:
        order, total = epoch_order(len(images)), 0.0
        for indices in order.split(batch_size):
            batch = images[indices]
            if use_augmentation:
                batch = augment(batch)
            reconstruction, kl = model(batch)
            loss = residual(batch, reconstruction).mean() + KL_WEIGHT * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(indices)
        epoch_loss = total / len(order)
        history.losses.append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.5f}")
        if epoch_loss < best_loss * (1.0 - MIN_IMPROVEMENT):
            best_loss, history.best_epoch = epoch_loss, epoch
            best_state = {name: value.clone() for name, value in model.state_dict().items()}
        elif epoch - history.best_epoch >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history


def epoch_order(count: int) -> torch.Tensor:
    """Shuffled indices of one epoch: each of `count` images once, or fresh shuffles of them
    repeated up to MIN_SAMPLES_PER_EPOCH indices when there are fewer images."""
    cycles = math.ceil(MIN_SAMPLES_PER_EPOCH / count)
    order = torch.cat([torch.randperm(count) for _ in range(cycles)])
    return order[: max(count, MIN_SAMPLES_PER_EPOCH)]

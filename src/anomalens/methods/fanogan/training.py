"""f-AnoGAN's two training stages: a WGAN-GP on the references, then the izi_f encoder."""

import torch
from tqdm import tqdm

from anomalens.methods.fanogan.model import FAnoGANNetwork

CRITIC_STEPS = 5
"""Critic updates per generator update (WGAN-GP)."""
GRADIENT_PENALTY = 10.0
"""Weight of the critic's gradient-norm penalty (WGAN-GP's lambda)."""
ADAM_BETAS = (0.0, 0.9)
"""WGAN-GP's Adam betas, for the generator and critic."""
FEATURE_WEIGHT = 1.0
"""Weight of the critic-feature residual against the pixel residual (f-AnoGAN's kappa), in
training the encoder and in the image score."""


def gradient_penalty(
    network: FAnoGANNetwork, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Mean of (||grad critic(x)|| - 1)^2 at random points x between real and fake images."""
    mix = torch.rand(len(real), 1, 1, 1)
    points = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (gradients,) = torch.autograd.grad(network.critic(points).sum(), points, create_graph=True)
    return (gradients.flatten(1).norm(dim=1) - 1).square().mean()


def train(
    network: FAnoGANNetwork,
    images: torch.Tensor,
    gan_steps: int,
    encoder_steps: int,
    batch_size: int,
    learning_rate: float,
    progress: bool = False,
    label: str = "f-AnoGAN",
) -> FAnoGANNetwork:
    """Train `network` in place on (N, 3, S, S) `images` in [-1, 1] and return it in eval mode.

    First `gan_steps` generator updates of a WGAN-GP (each after CRITIC_STEPS critic updates),
    then `encoder_steps` updates of the encoder with the generator and critic frozen, to
    minimise the izi_f loss: the pixel residual of G(E(x)) plus FEATURE_WEIGHT times the
    residual of the critic's features. Batches are drawn with replacement from the global
    torch generator.
    """
    generator, critic, encoder = network.generator, network.critic, network.encoder

    def draw() -> torch.Tensor:
        return images[torch.randint(len(images), (batch_size,))]

    def codes() -> torch.Tensor:
        return torch.randn(batch_size, generator.latent)

    critic_optimizer = torch.optim.Adam(critic.parameters(), learning_rate, betas=ADAM_BETAS)
    generator_optimizer = torch.optim.Adam(generator.parameters(), learning_rate, betas=ADAM_BETAS)
    encoder_optimizer = torch.optim.Adam(encoder.parameters(), learning_rate)
    network.train()
    bar = tqdm(total=gan_steps + encoder_steps, desc=label, unit="step", disable=not progress)
    for _ in range(gan_steps):
        for _ in range(CRITIC_STEPS):
            real = draw()
            with torch.no_grad():
                fake = generator(codes())
            loss = critic(fake).mean() - critic(real).mean()
            loss = loss + GRADIENT_PENALTY * gradient_penalty(network, real, fake)
            critic_optimizer.zero_grad()
            loss.backward()
            critic_optimizer.step()
        generator_loss = -critic(generator(codes())).mean()
        generator_optimizer.zero_grad()
        generator_loss.backward()
        generator_optimizer.step()
        bar.update()
        bar.set_postfix(critic=f"{loss.item():.3f}", refresh=False)
    generator.eval()
    critic.eval()
    network.requires_grad_(False)
    encoder.requires_grad_(True)
    for _ in range(encoder_steps):
        pixel, feature = network.residuals(draw())
        loss = pixel.mean() + FEATURE_WEIGHT * feature.mean()
        encoder_optimizer.zero_grad()
        loss.backward()
        encoder_optimizer.step()
        bar.update()
        bar.set_postfix(izi_f=f"{loss.item():.4f}", refresh=False)
    bar.close()
    network.requires_grad_(False)
    return network.eval()

"""f-AnoGAN: a WGAN-GP of the references and an izi_f encoder; what the generator cannot
reproduce is anomalous."""

import numpy as np
import pytest
import torch
from images import texture, with_defect

from anomalens.errors import ConfigError
from anomalens.methods.fanogan import FAnoGAN
from anomalens.methods.fanogan.model import FAnoGANNetwork
from anomalens.methods.fanogan.training import gradient_penalty


def test_a_pasted_defect_scores_above_every_good_image_where_it_lies():
    method = FAnoGAN(resolution=16, width=8, gan_steps=40, encoder_steps=150)
    method.fit([texture(seed) for seed in range(6)])
    good = method.score([texture(seed) for seed in range(10, 14)])
    (defective,) = method.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > max(scores.image_score for scores in good)
    row, col = np.unravel_index(defective.grid.argmax(), defective.grid.shape)
    assert 4 <= row < 12 and 5 <= col < 11  # the defect, on the 16 x 16 pixel map


def test_the_networks_map_between_images_and_codes_at_the_resolution():
    network = FAnoGANNetwork(latent=5, width=4, resolution=32)
    images = torch.zeros(2, 3, 32, 32)
    assert network.encoder(images).shape == (2, 5)
    assert network.generator(torch.zeros(2, 5)).shape == (2, 3, 32, 32)
    pixel, feature = network.residuals(images)
    assert pixel.shape == (2, 32, 32) and feature.shape == (2,)


def test_the_gradient_penalty_is_zero_for_a_critic_of_unit_slope():
    network = FAnoGANNetwork(latent=2, width=2, resolution=16)
    network.critic.forward = lambda x: x.flatten(1)[:, 0]  # gradient: one unit entry
    real, fake = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    assert gradient_penalty(network, real, fake).item() == pytest.approx(0.0)


@pytest.mark.parametrize("resolution", [8, 48])
def test_the_resolution_is_a_power_of_two(resolution):
    with pytest.raises(ConfigError, match="power of two"):
        FAnoGAN(resolution=resolution)

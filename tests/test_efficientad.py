"""EfficientAD-S: a small student learns the teacher's patches, an autoencoder the whole image;
a defect raises the local map, a misplaced part the global one."""

import numpy as np
import pytest
import torch
from images import texture, with_defect

from anomalens.errors import ConfigError
from anomalens.methods.efficientad import EfficientAD
from anomalens.methods.efficientad.model import Autoencoder, EfficientADNetwork


def test_a_pasted_defect_scores_above_every_good_image_where_it_lies():
    method = EfficientAD(resolution=64, steps=150)
    method.fit([texture(seed) for seed in range(6)])
    good = method.score([texture(seed) for seed in range(10, 14)])
    (defective,) = method.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > 2 * max(scores.image_score for scores in good)
    assert defective.grid.shape == (16, 16)  # the stride-4 grid of 64 px
    inside = defective.grid[4:12, 6:10]  # the cells the defect covers (96 px wide, resized)
    outside = np.ones(defective.grid.shape, bool)
    outside[3:13, 5:11] = False
    assert inside.mean() > 2 * defective.grid[outside].mean()


def test_the_student_and_the_autoencoder_answer_on_the_teachers_grid():
    network = EfficientADNetwork(channels=6, width=8, latent=4)
    local, global_, reconstruction = network.maps(
        torch.zeros(2, 3, 64, 96), torch.zeros(2, 6, 16, 24)
    )
    assert local.shape == global_.shape == reconstruction.shape == (2, 6, 16, 24)
    assert network.anomaly(torch.zeros(2, 3, 64, 96), torch.zeros(2, 6, 16, 24)).shape == (
        2,
        16,
        24,
    )


def test_the_autoencoder_sees_the_image_only_through_its_code():
    autoencoder = Autoencoder(out_channels=3, latent=4, width=8)
    code = autoencoder.encoder(torch.randn(1, 3, 64, 64))
    assert code.shape == (1, 4, 1, 1)


def test_the_maps_are_scaled_to_weigh_alike_on_the_references():
    method = EfficientAD(resolution=64, steps=20, width=8, latent=8)
    method.fit([texture(seed) for seed in range(4)])
    for network in method.networks:
        assert torch.all(network.map_scales > 0) and not torch.equal(
            network.map_scales, torch.ones(2)
        )


def test_the_student_needs_a_stride_4_level_first():
    with pytest.raises(ConfigError, match="stride 4"):
        EfficientAD(levels=("s8",))
    with pytest.raises(ConfigError, match="hard_quantile"):
        EfficientAD(hard_quantile=1.5)

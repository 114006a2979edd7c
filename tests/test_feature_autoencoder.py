"""The feature autoencoder: reconstruction of the backbone's features finds what it never saw."""

import numpy as np
import torch
from images import texture, with_defect

from anomalens.methods.feature_autoencoder import FeatureAutoencoderMethod
from anomalens.methods.feature_autoencoder.model import FeatureAutoencoder

SMALL = {"resolution": 64, "steps": 150, "hidden": 64, "bottleneck": 16}


def test_a_pasted_defect_scores_above_every_good_image_where_it_lies():
    method = FeatureAutoencoderMethod(**SMALL)
    method.fit([texture(seed) for seed in range(6)])
    good = method.score([texture(seed) for seed in range(10, 14)])
    (defective,) = method.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > 2 * max(scores.image_score for scores in good)
    row, col = np.unravel_index(defective.grid.argmax(), defective.grid.shape)
    assert 1 <= row <= 2 and 1 <= col <= 2  # the 4 x 4 grid cells the defect covers


def test_the_network_reconstructs_through_a_code_at_half_the_grid():
    network = FeatureAutoencoder(channels=12, hidden=8, bottleneck=3)
    features = torch.randn(2, 12, 6, 6)
    assert network.encoder(features).shape == (2, 3, 3, 3)
    assert network.residual(features).shape == (2, 6, 6)


def test_standardisation_is_learnt_from_the_references_and_saved():
    method = FeatureAutoencoderMethod(**SMALL | {"steps": 2})
    method.fit([texture(seed) for seed in range(3)])
    state = method.state()
    assert {"network0.standardize.mean", "network0.standardize.std"} <= set(state)
    assert np.abs(state["network0.standardize.mean"]).max() > 0

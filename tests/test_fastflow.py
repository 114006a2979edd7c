"""FastFlow: invertible coupling steps, exact log-determinants, anomalies far from the origin."""

import numpy as np
import torch
from images import texture, with_defect

from anomalens.methods.fastflow import FastFlow
from anomalens.methods.fastflow.model import AffineCoupling, FeatureFlow


def test_a_pasted_defect_scores_above_every_good_image_where_it_lies():
    method = FastFlow(resolution=128, steps=150, flow_steps=4)
    method.fit([texture(seed) for seed in range(6)])
    good = method.score([texture(seed) for seed in range(10, 14)])
    (defective,) = method.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > 2 * max(scores.image_score for scores in good)
    row, col = np.unravel_index(defective.grid.argmax(), defective.grid.shape)
    assert 2 <= row < 6 and 2 <= col < 6  # the 8 x 8 grid cells the defect covers


def test_a_coupling_step_starts_as_a_permutation_and_its_log_determinant_is_exact():
    torch.manual_seed(0)
    step = AffineCoupling(4, 8, 1, torch.tensor([2, 0, 3, 1]))
    x = torch.randn(1, 4, 1, 1)
    y, log_det = step(x)
    assert torch.equal(y, x[:, [2, 0, 3, 1]]) and log_det.abs().max() == 0
    torch.nn.init.normal_(step.subnet[-1].weight)
    jacobian = torch.autograd.functional.jacobian(lambda v: step(v)[0], x).reshape(4, 4)
    assert torch.allclose(step(x)[1].reshape(()), torch.linalg.slogdet(jacobian)[1], atol=1e-5)


def test_training_raises_the_likelihood_of_normal_features():
    torch.manual_seed(0)
    flow = FeatureFlow(channels=6, steps=4, hidden_ratio=1.0)
    features = torch.randn(16, 6, 4, 4)
    features[:, 1] = features[:, 0] * 2 + 0.1 * features[:, 1]  # correlated channels
    flow.standardize.fit(features)
    before = flow.negative_log_likelihood(features).mean().item()
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    for _ in range(100):
        loss = flow.negative_log_likelihood(features).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert flow.negative_log_likelihood(features).mean().item() < before - 0.3

"""The greedy k-center coreset."""

import numpy as np
import pytest

from anomalens.memory.coreset import greedy_coreset


@pytest.fixture
def points():
    return np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)


def test_keeps_the_requested_fraction_of_distinct_rows(points):
    chosen = greedy_coreset(points, 0.1)
    assert len(chosen) == 50
    assert len(np.unique(chosen)) == 50
    assert np.all(np.diff(chosen) > 0)


def test_is_deterministic_for_a_seed(points):
    np.testing.assert_array_equal(
        greedy_coreset(points, 0.1, seed=3), greedy_coreset(points, 0.1, seed=3)
    )


def test_always_keeps_an_isolated_point(points):
    points = points.copy()
    points[123] = 100.0
    assert 123 in greedy_coreset(points, 0.02)


def test_covers_the_bank_better_than_a_random_subset(points):
    def covering_radius(subset: np.ndarray) -> float:
        distances = np.linalg.norm(points[:, None] - points[subset][None], axis=2)
        return float(distances.min(axis=1).max())

    random_subset = np.random.default_rng(1).choice(len(points), 50, replace=False)
    assert covering_radius(greedy_coreset(points, 0.1, projection_dim=16)) < covering_radius(
        random_subset
    )


def test_ratio_one_keeps_everything(points):
    np.testing.assert_array_equal(greedy_coreset(points, 1.0), np.arange(len(points)))


def test_rejects_a_ratio_outside_zero_one(points):
    with pytest.raises(ValueError, match="ratio"):
        greedy_coreset(points, 0)

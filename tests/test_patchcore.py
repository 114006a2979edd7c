"""PatchCore specifics: the image score reweighted by the neighbourhood of its nearest patch."""

import numpy as np
import pytest
from images import texture, with_defect

from anomalens.methods.patchcore import PatchCore


def reweighted_score(method: PatchCore, image: np.ndarray, neighbourhood: int) -> float:
    """Eq. 7 of the PatchCore paper, by brute force over the method's bank."""
    (grid,) = method.patch_grids([image])
    queries = grid.features.reshape(-1, grid.features.shape[-1]).astype(np.float64)
    bank = method.neighbours.bank.astype(np.float64)
    distances = np.linalg.norm(queries[:, None] - bank[None], axis=-1)
    top = distances.min(axis=1).argmax()
    nearest = distances[top].argmin()
    support = np.argsort(np.linalg.norm(bank - bank[nearest], axis=1))[:neighbourhood]
    to_query = np.exp(distances[top, support])
    return float((1 - to_query[0] / to_query.sum()) * distances[top, nearest])


@pytest.mark.parametrize(
    ("coreset_ratio", "bank_rows"),
    [(1.0, 96), (0.05, 5)],  # 8 x 12 patches; the second bank is smaller than b = 9
    ids=["full bank", "bank smaller than b"],
)
def test_image_score_is_the_top_patch_score_reweighted_by_its_neighbourhood(
    coreset_ratio, bank_rows
):
    method = PatchCore(resolution=128, coreset_ratio=coreset_ratio, approximate=False)
    method.fit([texture(0)])
    assert len(method.neighbours.bank) == bank_rows
    image = with_defect(texture(1))
    expected = reweighted_score(method, image, min(method.reweight_neighbours, bank_rows))
    assert method.score([image])[0].image_score == pytest.approx(expected, rel=1e-4)


def test_without_reweighting_the_image_score_is_the_top_patch_score():
    method = PatchCore(resolution=64, reweight_neighbours=1, approximate=False)
    method.fit([texture(0)])
    (scores,) = method.score([with_defect(texture(1))])
    assert scores.image_score == pytest.approx(float(scores.grid.max()))


def test_held_out_scores_equal_those_of_a_model_fitted_without_the_image():
    images = [texture(seed) for seed in range(3)]
    method = PatchCore(resolution=64, coreset_ratio=1.0, approximate=False)
    held_out = method.fit_with_holdout(images)
    for index, scores in enumerate(held_out):
        alone = PatchCore(resolution=64, coreset_ratio=1.0, approximate=False)
        alone.fit([image for other, image in enumerate(images) if other != index])
        expected = alone.score([images[index]])[0].image_score
        assert scores.image_score == pytest.approx(expected, rel=1e-5)

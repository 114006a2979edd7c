"""The autoencoder baseline: trains on normal images, scores by reconstruction residual."""

import numpy as np
import pytest
from images import texture, with_defect

from anomalens.methods.autoencoder import AutoencoderMethod
from anomalens.methods.autoencoder.training import MIN_SAMPLES_PER_EPOCH, epoch_order

SIZE = 32
TOP, LEFT, SIDE = 12, 14, 6
"""Where the synthetic defect, a bright square, lies."""
FAST = {"resolution": SIZE, "width": 8, "latent_channels": 4, "epochs": 8, "batch_size": 12}
"""A small network that trains in about a second on 32 px images."""


def normal_images(count: int, first_seed: int = 0) -> list[np.ndarray]:
    """Dark noisy textures: an untrained network, whose output is mid-grey, fits them badly."""
    seeds = range(first_seed, first_seed + count)
    return [(texture(seed, SIZE, SIZE) * 0.6).astype(np.uint8) for seed in seeds]


def defective_images(count: int, first_seed: int = 100) -> list[np.ndarray]:
    return [with_defect(image, TOP, LEFT, SIDE) for image in normal_images(count, first_seed)]


def image_scores(method: AutoencoderMethod, images: list[np.ndarray]) -> np.ndarray:
    return np.array([scores.image_score for scores in method.score(images)])


@pytest.fixture(scope="module")
def fitted() -> AutoencoderMethod:
    method = AutoencoderMethod(**FAST)
    method.fit(normal_images(12))
    return method


def test_training_loss_falls(fitted):
    losses = fitted.history.losses
    assert min(losses) < 0.2 * losses[0]


def test_synthetic_defect_scores_above_every_normal_image(fitted):
    normal = normal_images(6, first_seed=50)
    assert image_scores(fitted, defective_images(6)).min() > image_scores(fitted, normal).max()


def test_anomaly_grid_peaks_on_the_defect(fitted):
    grid = fitted.score(defective_images(1))[0].grid
    row, column = np.unravel_index(grid.argmax(), grid.shape)
    assert TOP <= row < TOP + SIDE and LEFT <= column < LEFT + SIDE


def test_score_covers_the_whole_image_with_a_grid_at_the_resolution(fitted):
    scores = fitted.score([texture(0, 40, 64)])[0]
    assert scores.grid.shape == (SIZE, SIZE) and scores.grid.dtype == np.float32
    assert scores.extent == (40.0, 64.0) and scores.image_size == (40, 64)


def test_loaded_state_scores_identically(fitted):
    images = [*normal_images(3, first_seed=50), *defective_images(1)]
    restored = AutoencoderMethod(**fitted.config())
    restored.load_state(fitted.state())
    for original, loaded in zip(fitted.score(images), restored.score(images), strict=True):
        np.testing.assert_array_equal(loaded.grid, original.grid)
        assert loaded.image_score == original.image_score


def test_training_with_the_same_seed_is_reproducible():
    def grid_after_training(seed: int) -> np.ndarray:
        method = AutoencoderMethod(**{**FAST, "epochs": 3, "seed": seed})
        method.fit(normal_images(12))
        return method.score(normal_images(1, first_seed=50))[0].grid

    assert np.array_equal(grid_after_training(0), grid_after_training(0))
    assert not np.array_equal(grid_after_training(1), grid_after_training(0))


@pytest.mark.parametrize("options", [{"variational": True}, {"residual": "ssim"}])
def test_variational_and_ssim_options_find_the_defect(options):
    method = AutoencoderMethod(**FAST, **options)
    method.fit(normal_images(12))
    normal = normal_images(4, first_seed=50)
    assert image_scores(method, defective_images(4)).min() > image_scores(method, normal).max()


def test_held_out_scores_expose_a_bad_reference_that_the_final_fit_learns():
    references = normal_images(11)
    references.insert(5, defective_images(1)[0])
    method = AutoencoderMethod(**FAST)
    held_out = [scores.image_score for scores in method.fit_with_holdout(references)]
    assert len(held_out) == len(references)
    assert int(np.argmax(held_out)) == 5
    assert image_scores(method, [references[5]])[0] < held_out[5]


def test_a_few_references_are_cycled_through_to_fill_an_epoch():
    order = epoch_order(4)
    assert len(order) == MIN_SAMPLES_PER_EPOCH
    assert np.bincount(order.numpy()).tolist() == [MIN_SAMPLES_PER_EPOCH // 4] * 4


def test_many_references_are_each_seen_once_per_epoch():
    assert sorted(epoch_order(200).tolist()) == list(range(200))


@pytest.mark.parametrize(
    ("keywords", "problem"),
    [({"resolution": 100}, "multiple of 32"), ({"residual": "l1"}, "residual must be one of")],
)
def test_invalid_settings_are_refused(keywords, problem):
    with pytest.raises(ValueError, match=problem):
        AutoencoderMethod(**keywords)

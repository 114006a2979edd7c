"""The autoencoder baseline: trains on normal images, scores by reconstruction residual."""

import numpy as np
import pytest

from anomalens.methods.autoencoder.method import AutoencoderMethod

SIZE = 32
FAST = {"resolution": 32, "width": 8, "latent_channels": 4, "epochs": 30, "batch_size": 4}
"""A small network that trains in about a second on 32 px images."""


def normal_images(count: int, seed: int) -> list[np.ndarray]:
    """Grey RGB images with a little noise and a random overall brightness."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        level = rng.uniform(90, 110)
        pixels = (level + 6 * rng.standard_normal((SIZE, SIZE))).clip(0, 255).astype(np.uint8)
        images.append(np.repeat(pixels[:, :, None], 3, axis=2))
    return images


def with_bright_blob(image: np.ndarray) -> np.ndarray:
    """A copy of `image` with a white 6x6 square: a synthetic defect."""
    image = image.copy()
    image[12:18, 14:20] = 255
    return image


@pytest.fixture(scope="module")
def fitted() -> AutoencoderMethod:
    method = AutoencoderMethod(**FAST)
    method.fit(normal_images(12, seed=0))
    return method


def image_scores(method: AutoencoderMethod, images: list[np.ndarray]) -> np.ndarray:
    return np.array([scores.image_score for scores in method.score(images)])


def test_training_loss_falls(fitted):
    losses = fitted.history.losses
    assert min(losses) < 0.5 * losses[0]


def test_synthetic_defect_scores_above_every_normal_image(fitted):
    normal = normal_images(6, seed=1)
    defective = [with_bright_blob(image) for image in normal_images(6, seed=2)]
    assert image_scores(fitted, defective).min() > image_scores(fitted, normal).max()


def test_anomaly_grid_peaks_on_the_defect(fitted):
    grid = fitted.score([with_bright_blob(normal_images(1, seed=3)[0])])[0].grid
    row, column = np.unravel_index(grid.argmax(), grid.shape)
    assert 12 <= row < 18 and 14 <= column < 20


def test_score_covers_the_whole_image_with_a_grid_at_the_resolution(fitted):
    image = np.full((40, 64, 3), 100, np.uint8)
    scores = fitted.score([image])[0]
    assert scores.grid.shape == (32, 32) and scores.grid.dtype == np.float32
    assert scores.extent == (40.0, 64.0) and scores.image_size == (40, 64)


def test_loaded_state_scores_identically(fitted):
    images = [*normal_images(3, seed=4), with_bright_blob(normal_images(1, seed=5)[0])]
    restored = AutoencoderMethod(**fitted.config())
    restored.load_state(fitted.state())
    for original, loaded in zip(fitted.score(images), restored.score(images), strict=True):
        assert np.array_equal(original.grid, loaded.grid)
        assert original.image_score == loaded.image_score


def test_training_with_the_same_seed_is_reproducible(fitted):
    again = AutoencoderMethod(**fitted.config())
    again.fit(normal_images(12, seed=0))
    other_seed = AutoencoderMethod(**{**fitted.config(), "seed": 1})
    other_seed.fit(normal_images(12, seed=0))
    image = normal_images(1, seed=6)
    assert np.array_equal(again.score(image)[0].grid, fitted.score(image)[0].grid)
    assert not np.array_equal(other_seed.score(image)[0].grid, fitted.score(image)[0].grid)


@pytest.mark.parametrize(
    "options", [{"variational": True}, {"residual": "ssim"}, {"augment": False}]
)
def test_options_train_and_find_the_defect(options):
    method = AutoencoderMethod(**FAST, **options)
    method.fit(normal_images(12, seed=0))
    normal = normal_images(4, seed=1)
    defective = [with_bright_blob(image) for image in normal_images(4, seed=2)]
    assert image_scores(method, defective).min() > image_scores(method, normal).max()


def test_held_out_scores_expose_a_bad_reference_that_the_final_fit_learns():
    references = normal_images(11, seed=0)
    references.insert(5, with_bright_blob(normal_images(1, seed=7)[0]))
    method = AutoencoderMethod(**FAST)
    held_out = [scores.image_score for scores in method.fit_with_holdout(references)]
    assert len(held_out) == len(references)
    assert int(np.argmax(held_out)) == 5
    assert image_scores(method, [references[5]])[0] < held_out[5]


@pytest.mark.parametrize(
    ("keywords", "problem"),
    [
        ({"resolution": 100}, "multiple of 32"),
        ({"residual": "l1"}, "residual must be one of"),
        ({"weights": "lite0.pth"}, "lite0.pth"),
    ],
)
def test_invalid_settings_are_refused(keywords, problem):
    with pytest.raises(ValueError, match=problem):
        AutoencoderMethod(**keywords)

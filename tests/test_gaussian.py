"""The image-level Gaussian: whole-image changes, exact leave-one-out, persistence."""

import numpy as np
from images import texture

from anomalens import Detector
from anomalens.methods.gaussian import ImageGaussian

REFERENCES = [texture(seed) for seed in range(8)]


def test_an_image_whose_whole_texture_changed_scores_far_above_good_ones():
    method = ImageGaussian(resolution=64)
    method.fit(REFERENCES)
    rng = np.random.default_rng(99)
    coarse = np.repeat(np.kron(rng.integers(90, 170, (8, 12)), np.ones((8, 8))), 3).reshape(
        64, 96, 3
    )
    good, changed = method.score([texture(50), coarse.astype(np.uint8)])
    assert changed.image_score > 2 * good.image_score
    assert not good.grid.any()  # it adds nothing to a map


def test_held_out_scores_equal_those_of_a_model_fitted_without_the_image():
    method = ImageGaussian(resolution=64)
    held_out = method.fit_with_holdout(REFERENCES)
    without_first = ImageGaussian(resolution=64)
    without_first.fit(REFERENCES[1:])
    expected = without_first.score(REFERENCES[:1])[0].image_score
    assert abs(held_out[0].image_score - expected) < 1e-6 * expected


def test_an_ensemble_with_it_saves_and_loads_identical_scores(tmp_path):
    members = [
        {"resolution": 64, "rotation": False, "masking": False},
        {"method": "gaussian", "resolution": 64},
    ]
    detector = Detector(method="ensemble", members=members).fit(REFERENCES)
    loaded = Detector.load(detector.save(tmp_path / "model"))
    image = texture(30)
    assert loaded.predict([image])[0].score == detector.predict([image])[0].score

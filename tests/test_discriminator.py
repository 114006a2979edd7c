"""The discriminator method: synthetic defects, learning a pasted defect, folds, persistence."""

import json

import numpy as np
import pytest
from images import texture, with_defect

from anomalens import Detector
from anomalens.errors import ConfigError
from anomalens.methods.discriminator import Discriminator, method, synthesis
from anomalens.methods.discriminator.synthesis import cut_paste, perlin_region, random_defect

TINY = {"resolution": 64, "steps": 200, "defects_per_image": 2}
"""Settings small enough for a test: a 4 x 6 grid, a few hundred training steps."""
FAST = TINY | {"steps": 20}
"""For tests that need a trained head, not a good one."""


def colourful(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("synthesize", [cut_paste, perlin_region, random_defect])
@pytest.mark.parametrize("seed", range(6))
def test_a_synthetic_defect_changes_the_image_only_inside_its_nonempty_mask(synthesize, seed):
    image = colourful(seed)
    defective, mask = synthesize(image, np.random.default_rng(seed))
    changed = (defective != image).any(axis=2)
    assert defective.shape == image.shape and defective.dtype == np.uint8
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    assert changed.any()
    assert not (changed & ~mask).any()


@pytest.mark.parametrize("synthesize", [cut_paste, perlin_region])
def test_a_synthetic_defect_is_drawn_from_its_generator(synthesize):
    image = colourful(0)
    first, first_mask = synthesize(image, np.random.default_rng(3))
    again, again_mask = synthesize(image, np.random.default_rng(3))
    other, _ = synthesize(image, np.random.default_rng(4))
    assert np.array_equal(first, again) and np.array_equal(first_mask, again_mask)
    assert not np.array_equal(first, other)


def test_perlin_regions_on_grey_images_stay_grey():
    for seed in range(6):
        defective, _ = perlin_region(texture(0), np.random.default_rng(seed))
        assert (defective == defective[..., :1]).all()


def test_perlin_noise_is_smooth_and_bounded():
    noise = synthesis.perlin_noise((64, 96), (2, 4), np.random.default_rng(0))
    assert noise.shape == (64, 96)
    assert np.abs(noise).max() < 1.0 and noise.std() > 0.05
    assert np.abs(np.diff(noise, axis=1)).max() < 0.1  # neighbours differ little


def test_the_discriminator_scores_a_pasted_defect_high_where_it_lies():
    model = Discriminator(**TINY, knn_weight=0.0)
    model.fit([texture(seed) for seed in range(6)])
    good = model.score([texture(seed) for seed in range(10, 14)])
    (defective,) = model.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > 2 * max(scores.image_score for scores in good)
    row, col = np.unravel_index(defective.grid.argmax(), defective.grid.shape)
    assert 1 <= row <= 2 and 2 <= col <= 3  # the grid cells (16 px) the defect covers


def test_each_held_out_score_comes_from_a_head_that_never_saw_that_reference(monkeypatch):
    seen = []

    def recording_train(patches, *args):
        seen.append(set(patches.normal_owners.tolist()) | set(patches.defect_owners.tolist()))
        return train(patches, *args)

    train = method.train
    monkeypatch.setattr(method, "train", recording_train)
    model = Discriminator(**FAST, knn_weight=0.0)
    held_out = model.fit_with_holdout([texture(seed) for seed in range(7)])
    folds = [{0, 3, 6}, {1, 4}, {2, 5}]
    assert seen == [set(range(7)) - fold for fold in folds]  # new images: the folds' mean
    assert len(held_out) == 7 and all(scores.image_score > 0 for scores in held_out)


def test_the_seed_makes_training_reproducible():
    images, probe = [texture(seed) for seed in range(4)], [with_defect(texture(9))]
    scores = []
    for seed in (0, 0, 1):
        model = Discriminator(**FAST, knn_weight=0.0, seed=seed)
        model.fit(images)
        scores.append(model.score(probe)[0].grid)
    assert np.array_equal(scores[0], scores[1])
    assert not np.array_equal(scores[0], scores[2])


@pytest.mark.parametrize("knn_weight", [0.0, 0.75])
def test_a_saved_detector_scores_exactly_as_before(tmp_path, knn_weight):
    detector = Detector(method="discriminator", knn_weight=knn_weight, **FAST)
    detector.fit([texture(seed) for seed in range(8)])
    probe = [texture(30), with_defect(texture(31))]
    before = detector.predict(probe)
    after = Detector.load(detector.save(tmp_path / "model")).predict(probe)
    assert min(detector.held_out_scores) > 0  # the log-normal thresholds need positive scores
    for old, new in zip(before, after, strict=True):
        assert old.score == new.score and np.array_equal(old.anomaly_map, new.anomaly_map)


def test_the_configuration_round_trips_through_json():
    model = Discriminator(resolution=96, noise_std=0.05, hidden=64, knn_weight=0.5, seed=3)
    config = json.loads(json.dumps(model.config()))
    assert Discriminator(**config).config() == model.config()
    detector = Detector(method="discriminator", seed=3, resolution=96, knn_weight=0.5)
    assert Detector.from_config(json.loads(json.dumps(detector.config()))).config() == (
        detector.config()
    )


@pytest.mark.parametrize("knn_weight", [-0.1, 1.5])
def test_the_knn_weight_lies_between_zero_and_one(knn_weight):
    with pytest.raises(ConfigError, match="knn_weight"):
        Discriminator(knn_weight=knn_weight)

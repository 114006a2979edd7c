"""Zero-shot batch mode: every image scored against the other images of its batch."""

import numpy as np
import pytest
from images import texture, with_defect

from anomalens.batch import zero_shot
from anomalens.batch.zero_shot import mutual_scores
from anomalens.detector import Detector
from anomalens.errors import ConfigError


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def brute_force(features: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """The definition, written plainly: per patch, its nearest distance to each other image,
    then the mean of the smallest `fraction` of those."""
    scores = []
    for i, own in enumerate(features):
        per_image = [1 - (own @ other.T).max(axis=1) for j, other in enumerate(features) if j != i]
        distances = np.sort(np.stack(per_image, axis=1), axis=1)
        kept = max(1, round(fraction * (len(features) - 1)))
        scores.append(distances[:, :kept].mean(axis=1))
    return scores


def test_mutual_scores_follow_the_definition_whatever_the_block_size(monkeypatch):
    rng = np.random.default_rng(0)
    features = [unit_rows(rng.standard_normal((int(n), 8))) for n in rng.integers(3, 12, 7)]
    expected = brute_force(features, 0.3)
    for block in (1, 5, 10_000):  # every image alone, a few per block, all in one
        monkeypatch.setattr(zero_shot, "BLOCK_PATCHES", block)
        for got, want in zip(mutual_scores(features, 0.3), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_patch_no_other_image_has_scores_high_and_another_images_defect_does_not_count():
    rng = np.random.default_rng(1)
    normal = unit_rows(rng.standard_normal((20, 16)))  # the patterns every good image shows
    features = [normal + 0.01 * unit_rows(rng.standard_normal((20, 16))) for _ in range(8)]
    features = [unit_rows(f) for f in features]
    odd = unit_rows(rng.standard_normal((1, 16)))
    features[3] = np.concatenate([features[3], odd])  # one image carries a defect patch
    scores = mutual_scores(features, 0.3)
    assert scores[3].argmax() == 20 and scores[3][20] > 10 * scores[3][:20].max()
    # The other images' normal patches are not raised by image 3's defect: it is one image of 7.
    others = np.concatenate([s for i, s in enumerate(scores) if i != 3])
    assert others.max() < 0.1 * scores[3][20]


def test_a_batch_with_one_odd_image_flags_that_image_alone():
    images = [texture(seed) for seed in range(9)]
    images[4] = with_defect(images[4])
    detector = Detector(method="anomalydino", resolution=192, rotation=False)
    results = detector.predict_batch(images, zero_shot=True)
    assert [result.verdict for result in results] == ["NG" if i == 4 else "OK" for i in range(9)]
    odd = results[4]
    row, col = np.unravel_index(odd.anomaly_map.argmax(), odd.anomaly_map.shape)
    assert 16 <= row < 46 and 32 <= col < 62  # the map peaks at the defect (24-38, 40-54)
    # the region grows from the batch threshold down to 0.8 x it (hysteresis), over the map's
    # smoothed flanks on this small image: 52% of it (36% at the plain threshold)
    assert odd.boxes and odd.mask[24:38, 40:54].all() and odd.mask.mean() < 0.6
    assert set(detector.batch_thresholds) == {"image", "pixel"}
    assert not detector.is_fitted  # zero-shot needs and makes no model


def test_the_ensemble_scores_a_batch_with_each_member_normalised_by_the_batch():
    images = [texture(seed) for seed in range(9)]
    images[2] = with_defect(images[2])
    members = [
        {"resolution": 64, "rotation": False},
        {"resolution": "native", "levels": ["s8"], "rotation": False},
    ]
    detector = Detector(members=members)
    results = detector.predict_batch(images, zero_shot=True)
    scores = [result.score for result in results]
    assert np.argmax(scores) == 2 and results[2].is_anomalous
    assert np.median(scores) == pytest.approx(1.0, rel=0.3)  # 1.0 is what a typical image scores


def test_refit_makes_the_confidently_good_images_references_of_a_normal_model():
    images = [texture(seed) for seed in range(10)]
    images[7] = with_defect(images[7])
    detector = Detector(method="anomalydino", resolution=64, rotation=False)
    results = detector.predict_batch(images, zero_shot=True, refit=6)
    assert detector.is_fitted and len(detector.references) == 6
    assert results[7].is_anomalous and np.argmax([result.score for result in results]) == 7
    assert detector.batch_thresholds == detector.thresholds


def test_zero_shot_refuses_a_lone_image_and_methods_without_patch_features():
    with pytest.raises(ConfigError, match="at least two images"):
        Detector(method="anomalydino", resolution=64).predict_batch([texture(0)], zero_shot=True)
    with pytest.raises(ConfigError, match="anomalydino and ensemble"):
        Detector(method="padim").predict_batch([texture(0), texture(1)], zero_shot=True)
    with pytest.raises(ConfigError, match="zero_shot"):
        Detector().predict_batch([texture(0)], refit=2)

"""AnomalyDINO specifics: rotation augmentation and held-out scores."""

import numpy as np
import pytest
from images import object_on_background, texture, with_defect

from anomalens import Detector
from anomalens.errors import ImageError
from anomalens.methods.anomalydino import DENSITY_FLOOR, AnomalyDINO, rotated_count


def striped(angle_step: int) -> np.ndarray:
    """Diagonal stripes; `angle_step` 0 or 1 flips their direction (a 90 degree turn)."""
    rows, cols = np.mgrid[:96, :96]
    wave = np.sin((cols + (rows if angle_step == 0 else -rows)) / 4)
    gray = np.where(wave > 0, 200, 50).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_rotation_adds_seven_rotated_copies_of_each_reference_to_the_bank():
    plain = AnomalyDINO(resolution=64, rotation=False, masking=False)
    rotated = AnomalyDINO(resolution=64, rotation=True, masking=False)
    plain.fit([texture(0)])
    rotated.fit([texture(0)])
    assert len(rotated.neighbours.bank) == 8 * len(plain.neighbours.bank)


def test_rotation_makes_a_rotated_part_look_normal():
    plain = AnomalyDINO(resolution=96, rotation=False, masking=False)
    rotated = AnomalyDINO(resolution=96, rotation=True, masking=False)
    plain.fit([striped(0)])
    rotated.fit([striped(0)])
    turned = striped(1)
    assert rotated.score([turned])[0].image_score < 0.5 * plain.score([turned])[0].image_score


def test_held_out_scores_exclude_the_image_itself():
    method = AnomalyDINO(resolution=64, rotation=False, masking=False)
    images = [texture(seed) for seed in range(3)]
    held_out = method.fit_with_holdout(images)
    own = method.score(images)
    assert all(h.image_score > o.image_score for h, o in zip(held_out, own, strict=True))
    assert all(o.image_score < 1e-5 for o in own)


@pytest.mark.parametrize("masking", [1, 0, "yes", None])
def test_masking_is_true_false_or_auto_and_nothing_else(masking):
    with pytest.raises(ValueError, match="masking must be"):
        AnomalyDINO(masking=masking)


def test_rotated_copies_fill_the_bank_up_to_the_limit_of_references_with_all_their_copies():
    images = [texture(seed, 64, 64) for seed in range(8)]
    capped = AnomalyDINO(resolution=64, rotation_step=90, rotated_references=2, masking=False)
    _, owners, _ = capped.bank_patches(images[:3], progress=False)
    rows = np.bincount(owners)  # 2 references with 3 copies each would be 8 images: 3 + 2 * 3
    assert rows[0] == rows[2] == 4 * rows[1]  # the first and the last are rotated
    _, owners, _ = capped.bank_patches(images, progress=False)
    assert len(set(np.bincount(owners))) == 1  # 8 references are 8 images: none is rotated
    assert [rotated_count(n, 16, 7) for n in (5, 16, 54, 127, 128, 200)] == [5, 16, 11, 1, 0, 0]
    assert rotated_count(200, None, 7) == 200 and rotated_count(20, 16, 0) == 0


def test_a_rotation_step_of_90_degrees_adds_only_the_right_angles():
    plain = AnomalyDINO(resolution=64, rotation=False, masking=False)
    right_angles = AnomalyDINO(resolution=64, rotation_step=90, masking=False)
    plain.fit([texture(0)])
    right_angles.fit([texture(0)])
    assert len(right_angles.neighbours.bank) == 4 * len(plain.neighbours.bank)


@pytest.mark.parametrize("step", [0, 7, 360])
def test_the_rotation_step_divides_a_full_turn(step):
    with pytest.raises(ValueError, match="rotation_step must divide 360"):
        AnomalyDINO(rotation_step=step)


def test_native_resolution_keeps_each_image_at_its_own_size():
    method = AnomalyDINO(resolution="native", levels=("s8",), rotation=False, masking=False)
    small, large = texture(0)[:64, :96], np.tile(texture(1), (2, 2, 1))[:128, :192]
    grids = method.patch_grids([small, large])
    assert [grid.features.shape[:2] for grid in grids] == [(8, 12), (16, 24)]


CORRECTIONS = {
    "subtract": lambda distance, spacing: np.maximum(distance - spacing, 0),
    "divide": lambda distance, spacing: distance / (spacing + DENSITY_FLOOR),
}


@pytest.mark.parametrize("density", sorted(CORRECTIONS))
def test_density_correction_rescales_each_distance_by_its_neighbours_spacing(density, tmp_path):
    images = [texture(seed) for seed in range(4)]
    options = {"resolution": 64, "rotation": False, "masking": False, "density": density}
    detector = Detector(method="anomalydino", **options).fit(images)
    method = detector.method
    good = texture(9)
    grid = method.patch_grids([good])[0]
    distances, indices = method.neighbours.distances(
        grid.features.reshape(-1, grid.features.shape[-1])
    )
    expected = CORRECTIONS[density](distances[:, 0], method.bank_spacing[indices[:, 0]])
    np.testing.assert_allclose(method.score([good])[0].grid.ravel(), expected, rtol=1e-5)
    loaded = Detector.load(detector.save(tmp_path / "model"))
    assert loaded.predict([good])[0].score == detector.predict([good])[0].score


def test_the_bank_spacing_is_each_rows_distance_to_another_images_nearest_row():
    method = AnomalyDINO(resolution=64, rotation=False, masking=False, density="subtract")
    images = [texture(0), texture(0), texture(1)]  # the first two are identical
    method.fit(images)
    owners = method.neighbours.owners
    assert np.allclose(method.bank_spacing[owners < 2], 0, atol=1e-5)
    assert method.bank_spacing[owners == 2].min() > 0.01


def test_density_is_subtract_divide_or_none():
    with pytest.raises(ValueError, match="density must be"):
        AnomalyDINO(density="lof")


def test_position_statistics_divide_each_position_by_its_mean_held_out_score(tmp_path):
    rows = np.arange(64)[:, None, None]
    images = [np.where(rows < 32, texture(seed), 128).astype(np.uint8) for seed in range(4)]
    options = {"resolution": 64, "rotation": False, "masking": False}
    plain = AnomalyDINO(**options)
    held_out = plain.fit_with_holdout(images)
    method = AnomalyDINO(**options, position_statistics=True)
    normalised = method.fit_with_holdout(images)
    mean = np.mean([scores.grid for scores in held_out], axis=0)
    assert np.allclose(method.position_mean, np.maximum(mean, 0.1 * mean.mean()))
    np.testing.assert_allclose(normalised[0].grid, held_out[0].grid / method.position_mean)
    probe = images[0].copy()
    assert np.allclose(
        method.score([probe])[0].grid, plain.score([probe])[0].grid / method.position_mean
    )
    loaded = Detector.load(
        Detector(method="anomalydino", **options, position_statistics=True)
        .fit(images)
        .save(tmp_path / "model")
    )
    assert loaded.method.position_mean.shape == mean.shape


def test_position_statistics_refuse_images_of_another_size():
    method = AnomalyDINO(resolution=64, rotation=False, masking=False, position_statistics=True)
    method.fit([texture(seed) for seed in range(3)])
    with pytest.raises(ImageError, match="needs images of one size"):
        method.score([texture(5, width=160)])


def test_an_approximate_bank_gives_the_image_scores_of_exact_search():
    images = [texture(seed, 128, 160) for seed in range(4)]
    tests = [with_defect(texture(9, 128, 160)), texture(10, 128, 160)]
    scores = {}
    for approximate, exact_top in ((True, True), (False, False), (True, False)):
        method = AnomalyDINO(
            resolution=128, masking=False, approximate=approximate, exact_top=exact_top
        )
        method.fit(images)
        held_out = method.fit_with_holdout(images)
        scores[approximate, exact_top] = [s.image_score for s in method.score(tests) + held_out]
    assert method.neighbours.bank.shape[0] > 2_000  # the approximate ones had an index
    np.testing.assert_allclose(scores[True, True], scores[False, False], rtol=1e-5)
    assert not np.allclose(scores[True, False], scores[False, False], rtol=1e-3)  # index alone


def test_with_masking_the_exact_top_patches_are_the_foreground_ones():
    images = [object_on_background(seed, 256) for seed in range(3)]
    tests = [with_defect(object_on_background(7, 256), 110, 110, 24)]
    scores = {}
    for approximate in (True, False):
        method = AnomalyDINO(resolution=256, approximate=approximate, exact_top=True)
        method.fit(images)
        assert method.use_mask
        scores[approximate] = [s.image_score for s in method.score(tests)]
    assert method.neighbours.bank.shape[0] > 2_000 or pytest.fail("no index to test")
    np.testing.assert_allclose(scores[True], scores[False], rtol=1e-5)

"""AnomalyDINO specifics: rotation augmentation and held-out scores."""

import numpy as np
import pytest
from images import texture

from anomalens.methods.anomalydino import AnomalyDINO


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

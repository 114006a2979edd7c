"""STFPM: a student of the teacher's architecture learns the teacher's features on normal
images and disagrees elsewhere."""

import numpy as np
import pytest
import torch
from images import texture, with_defect

from anomalens.errors import ConfigError
from anomalens.methods.stfpm import STFPM
from anomalens.methods.stfpm.model import Student, feature_distance


def test_a_pasted_defect_scores_above_every_good_image_where_it_lies():
    method = STFPM(resolution=64, steps=150)
    method.fit([texture(seed) for seed in range(6)])
    good = method.score([texture(seed) for seed in range(10, 14)])
    (defective,) = method.score([with_defect(texture(20), top=16, left=32, size=32)])
    assert defective.image_score > 2 * max(scores.image_score for scores in good)
    assert defective.grid.shape == (16, 16)  # the finest level, s4, of 64 px
    inside = defective.grid[4:12, 6:10]  # the 16 x 16 grid cells the defect covers
    outside = np.ones(defective.grid.shape, bool)
    outside[3:13, 5:11] = False
    assert inside.mean() > 1.5 * defective.grid[outside].mean()


def test_the_student_stops_at_the_deepest_level_and_matches_the_teachers_shapes():
    student = Student("efficientnet_lite0", ("s4", "s8"))
    outputs = student(torch.zeros(1, 3, 64, 64))
    assert {level: tuple(value.shape) for level, value in outputs.items()} == {
        "s4": (1, 24, 16, 16),
        "s8": (1, 40, 8, 8),
    }
    assert len(student.network._blocks) == 5  # stem stage, two s4 blocks, two s8 blocks


def test_the_distance_ignores_feature_scale():
    teacher = torch.randn(1, 8, 2, 2)
    assert feature_distance(teacher, 3 * teacher).abs().max() < 1e-6
    assert feature_distance(teacher, -teacher).min() > 1.99  # opposite directions: 2


def test_the_student_needs_an_efficientnet_lite_teacher():
    with pytest.raises(ConfigError, match="EfficientNet-Lite"):
        STFPM(backbone="inception_v3")

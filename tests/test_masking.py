"""Zero-shot PCA masking and the masking test on the first reference."""

import numpy as np
import pytest
from images import object_on_background, texture

from anomalens.localization.masking import foreground_mask, should_mask
from anomalens.methods.anomalydino import AnomalyDINO


@pytest.fixture(scope="module")
def method():
    return AnomalyDINO(resolution=256, rotation=False)


def features(method, image):
    return method.patch_grids([image])[0].features


def test_an_object_on_a_plain_background_is_masked(method):
    assert should_mask(features(method, object_on_background(0)))


def test_a_texture_close_up_is_not_masked(method):
    assert not should_mask(features(method, texture(0, 128, 128)))


def test_stripes_filling_the_frame_are_not_masked(method):
    columns = np.arange(128)
    stripes = np.where(np.sin(columns / 3) > 0, 230, 30).astype(np.uint8)
    image = np.repeat(np.repeat(stripes[None, :, None], 128, axis=0), 3, axis=2)
    assert not should_mask(features(method, image))


def test_the_foreground_mask_covers_the_object_and_not_the_corners(method):
    mask = foreground_mask(features(method, object_on_background(1)))
    height, width = mask.shape
    assert mask[height // 2, width // 2]
    assert not mask[0, 0] and not mask[-1, -1]


def test_auto_masking_is_decided_on_the_first_reference():
    objects = AnomalyDINO(resolution=256, rotation=False)
    objects.fit([object_on_background(seed) for seed in range(2)])
    textures = AnomalyDINO(resolution=256, rotation=False)
    textures.fit([texture(seed, 128, 128) for seed in range(2)])
    assert objects.use_mask and not textures.use_mask

"""The supervised baseline's inputs: crops around boxes and the targeted augmentation."""

import numpy as np
import pytest
import torch

from anomalens.defect_types.supervised import CROP, CropClassifier, augment, crop


def test_a_crop_is_a_normalised_square_around_the_box_with_context():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # the 20 px defect
    pixels = crop(image, (90, 40, 110, 60))
    assert pixels.shape == (3, CROP, CROP) and pixels.min() == -1 and pixels.max() == 1
    bright = (pixels[0] > 0).float().mean().item()
    assert bright == pytest.approx((1 / 1.5) ** 2, abs=0.05)  # the box fills 1/1.5 of each side


def test_a_crop_past_the_image_edge_repeats_the_edge():
    image = np.full((30, 30, 3), 200, np.uint8)
    assert torch.allclose(crop(image, (25, 25, 40, 40)), crop(image, (25, 25, 40, 40))[:, :1, :1])


def test_augmentation_keeps_shape_and_range_and_changes_each_crop():
    crops = torch.rand(4, 3, CROP, CROP) * 2 - 1
    out = augment(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and out.min() >= -1 and out.max() <= 1
    assert all(not torch.allclose(a, b) for a, b in zip(out, crops, strict=True))


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        CropClassifier("mixup").fit(torch.zeros(2, 3, CROP, CROP), np.array([0, 1]))

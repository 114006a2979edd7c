"""How the feature extractor sizes images: a shorter side in pixels, or each image's own size."""

import pytest

from anomalens.errors import ConfigError
from anomalens.features import MAX_NATIVE_PIXELS, FeatureExtractor


def test_a_resolution_in_pixels_sets_the_shorter_side():
    extractor = FeatureExtractor("efficientnet_lite0", resolution=320)
    assert extractor.target_size(160, 480) == (320, 960)


def test_native_resolution_keeps_the_image_size():
    extractor = FeatureExtractor("efficientnet_lite0", resolution="native", levels=("s8",))
    assert extractor.target_size(640, 480) == (640, 480)


def test_native_resolution_scales_large_images_down_to_a_bounded_pixel_count():
    extractor = FeatureExtractor("efficientnet_lite0", resolution="native", levels=("s8",))
    height, width = extractor.target_size(3000, 4000)
    assert height * width <= MAX_NATIVE_PIXELS * 1.01
    assert abs(height / width - 0.75) < 0.01


@pytest.mark.parametrize("resolution", [0, -8, "full", 1.5])
def test_a_resolution_is_positive_pixels_or_native(resolution):
    with pytest.raises(ConfigError, match="resolution must be"):
        FeatureExtractor("efficientnet_lite0", resolution=resolution)


def test_native_resolution_cannot_square_images():
    with pytest.raises(ConfigError, match="keep_aspect"):
        FeatureExtractor("efficientnet_lite0", resolution="native", keep_aspect=False)

"""How the feature extractor sizes images: a shorter side in pixels, or each image's own size."""

import numpy as np
import pytest
from images import texture

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


def test_tiles_give_the_whole_image_features_away_from_their_borders():
    image = np.tile(texture(3), (4, 4, 1))[:256, :384]
    whole = FeatureExtractor("efficientnet_lite0", resolution="native", levels=("s8",))
    tiled = FeatureExtractor("efficientnet_lite0", resolution="native", levels=("s8",), tile=128)
    expected, found = whole.extract([image])[0].levels["s8"], tiled.extract([image])[0].levels["s8"]
    assert found.shape == expected.shape == (40, 32, 48)
    difference = (found - expected).abs().max() / expected.abs().max()
    assert difference < 1e-3, difference  # 64 px of context cover stride 8's receptive field


def test_with_tiles_native_resolution_keeps_large_frames_whole():
    extractor = FeatureExtractor("efficientnet_lite0", resolution="native", tile=512)
    assert extractor.target_size(3000, 4000) == (3000, 4000)


def test_a_tiled_detector_saves_and_rebuilds_its_tile_setting(tmp_path):
    from anomalens import Detector

    options = {"resolution": "native", "levels": ["s8"], "rotation": False, "tile": 64}
    detector = Detector(method="anomalydino", **options).fit([texture(s) for s in range(3)])
    loaded = Detector.load(detector.save(tmp_path / "model"))
    assert loaded.method.extractor.tile == 64
    probe = texture(9, 128, 192)
    assert loaded.predict([probe])[0].score == detector.predict([probe])[0].score

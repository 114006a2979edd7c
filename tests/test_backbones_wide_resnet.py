"""Wide ResNet-50-2 loads torchvision's state-dict layout offline (tiny random checkpoints)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from offline_weights import isolate_weights, random_tensors

from anomalens.backbones import get_entry, load_backbone, weights_status
from anomalens.backbones.checkpoints import WeightsFileError
from anomalens.backbones.wide_resnet import ResNet
from anomalens.errors import MissingWeightsError
from anomalens.features import FeatureExtractor

FILENAME = "wide_resnet50_2-95faca4b.pth"
STEM, WIDTH = 8, 16  # tiny: 8 stem channels, 16 bottleneck channels in layer1


def batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean")}


def torchvision_state(depths: tuple[int, ...] = (1, 2, 1, 1)) -> dict[str, torch.Tensor]:
    """Random weights named as in torchvision's wide_resnet50_2 state dict, tiny widths."""
    shapes = {"conv1.weight": (STEM, 3, 7, 7), **batch_norm("bn1", STEM)}
    inputs = STEM
    for index, depth in enumerate(depths):
        width, outputs = WIDTH * 2**index, STEM * 4 * 2**index
        for block in range(depth):
            prefix = f"layer{index + 1}.{block}"
            shapes |= {
                f"{prefix}.conv1.weight": (width, inputs, 1, 1),
                f"{prefix}.conv2.weight": (width, width, 3, 3),
                f"{prefix}.conv3.weight": (outputs, width, 1, 1),
                **batch_norm(f"{prefix}.bn1", width),
                **batch_norm(f"{prefix}.bn2", width),
                **batch_norm(f"{prefix}.bn3", outputs),
            }
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (outputs, inputs, 1, 1)
                shapes |= batch_norm(f"{prefix}.downsample.1", outputs)
            inputs = outputs
    shapes |= {"fc.weight": (1000, inputs), "fc.bias": (1000,)}
    state = random_tensors(shapes)
    for key in [key for key in state if key.endswith("running_mean")]:
        prefix = key.removesuffix("running_mean")
        state[f"{prefix}running_var"] = 1 + torch.rand(state[key].shape)
        state[f"{prefix}num_batches_tracked"] = torch.tensor(100)
        state[f"{prefix}weight"] += 1.0
    return state


@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_weights(monkeypatch, tmp_path)


def test_wide_resnet50_2_has_torchvision_names_shapes_and_parameter_count():
    with torch.device("meta"):
        model = ResNet("wide_resnet50_2", (3, 4, 6, 3))
    state = model.state_dict()
    parameters = sum(p.numel() for p in model.parameters())

    assert parameters + 2048 * 1000 + 1000 == 68_883_240  # torchvision's count, with its fc
    assert len(state) + 2 == 320  # torchvision's state dict holds fc.weight and fc.bias too
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (256, 256, 3, 3)
    assert state["layer3.5.conv3.weight"].shape == (1024, 512, 1, 1)
    assert state["layer4.2.bn3.num_batches_tracked"].shape == ()


def test_levels_layer1_to_layer4_have_strides_4_to_32(weights_dir: Path):
    torch.save(torchvision_state(), weights_dir / FILENAME)
    model = load_backbone("wide_resnet50_2", str(weights_dir / FILENAME))

    with torch.no_grad():
        maps = model(torch.randn(2, 3, 64, 96), ("layer1", "layer2", "layer3", "layer4"))

    assert model.default_levels == ("layer2", "layer3")
    for index, level in enumerate(("layer1", "layer2", "layer3", "layer4")):
        stride = model.strides[level]
        assert stride == 4 * 2**index
        assert maps[level].shape == (2, STEM * 4 * 2**index, 64 // stride, 96 // stride)


def test_images_are_cropped_so_that_the_coarsest_grid_tiles_them(weights_dir: Path):
    torch.save(torchvision_state(), weights_dir / FILENAME)
    path = str(weights_dir / FILENAME)
    image = np.zeros((336, 400, 3), dtype=np.uint8)

    for levels, stride in ((("layer2", "layer3"), 16), (("layer3", "layer4"), 32)):
        (maps,) = FeatureExtractor("wide_resnet50_2", 336, levels, path).extract([image])
        rows, cols = maps.levels[levels[-1]].shape[-2:]
        assert maps.extent == (rows * stride, cols * stride)
        assert maps.extent == (336 // stride * stride, 400 // stride * stride)


def test_features_of_an_image_do_not_depend_on_its_batch(weights_dir: Path):
    torch.save(torchvision_state(), weights_dir / FILENAME)
    model = load_backbone("wide_resnet50_2", str(weights_dir / FILENAME))
    images = torch.randn(3, 3, 32, 48)

    with torch.no_grad():
        alone = model(images[1:2], ("layer2",))["layer2"]
        batched = model(images, ("layer2",))["layer2"]

    torch.testing.assert_close(alone[0], batched[1], rtol=1e-4, atol=1e-5)


def test_torch_hub_checkpoint_is_found_and_listed_with_its_sha256(weights_dir: Path, tmp_path):
    hub = tmp_path / "home/.cache/torch/hub/checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchvision_state(), hub / FILENAME)

    row = next(row for row in weights_status() if row["name"] == "wide_resnet50_2")

    assert get_entry("wide_resnet50_2").locate(None) == hub / FILENAME
    assert row["available"] is True and len(str(row["sha256"])) == 64


def test_missing_weights_error_names_backbone_places_and_remedies(weights_dir: Path, tmp_path):
    with pytest.raises(MissingWeightsError) as caught:
        get_entry("wide_resnet50_2").locate(None)

    message = str(caught.value)
    assert "wide_resnet50_2" in message and str(weights_dir / FILENAME) in message
    assert str(tmp_path / "home/.cache/torch/hub/checkpoints" / FILENAME) in message
    assert f"https://download.pytorch.org/models/{FILENAME}" in message


def test_a_basic_block_resnet_file_is_rejected_naming_the_file(weights_dir: Path):
    state = {k: v for k, v in torchvision_state().items() if ".conv3." not in k}
    torch.save(state, weights_dir / "resnet18.pth")

    with pytest.raises(WeightsFileError, match=r"resnet18\.pth.*conv3"):
        load_backbone("wide_resnet50_2", str(weights_dir / "resnet18.pth"))

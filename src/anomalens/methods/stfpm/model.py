"""STFPM's student (Wang et al. 2021): the teacher's architecture up to its deepest level used,
randomly initialised, trained to reproduce the teacher's features on normal images."""

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.backbones.efficientnet_lite import EfficientNetLite

BATCH_NORM_MOMENTUM = 0.1
"""The student's running statistics follow its changing weights faster than the ImageNet
momentum (0.01) would over a few hundred steps."""


class Student(nn.Module):
    """An untrained EfficientNet-Lite cut after the stage of its deepest level in `levels`.

    Args:
        variant: "efficientnet_lite0" or "efficientnet_lite2" (the teacher's).
        levels: the feature levels it returns, as the teacher names them.
    """

    def __init__(self, variant: str, levels: tuple[str, ...]):
        super().__init__()
        width, depth = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite2": (1.1, 1.2)}[variant]
        self.levels = levels
        network = EfficientNetLite(variant, width, depth)
        ran: list[int] = []
        hooks = [
            block.register_forward_hook(lambda *_, index=index: ran.append(index))
            for index, block in enumerate(network._blocks)
        ]
        with torch.no_grad():
            network(torch.zeros(1, 3, 32, 32), levels)  # stops after the deepest level
        for hook in hooks:
            hook.remove()
        del network._blocks[max(ran) + 1 :]
        network._conv_head = network._bn1 = network._fc = nn.Identity()
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = BATCH_NORM_MOMENTUM
        self.network = network

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.network(images, self.levels)


def feature_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, h, w) half the squared distance of the L2-normalised feature vectors per position
    (STFPM's loss and score)."""
    return 0.5 * (F.normalize(teacher, dim=1) - F.normalize(student, dim=1)).square().sum(dim=1)

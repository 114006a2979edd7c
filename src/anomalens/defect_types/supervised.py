"""The supervised baseline most teams try first: EfficientNet-Lite0 (the embedded ImageNet
weights) fine-tuned on crops around the example defects, on the CPU.

Three variants: plain cross-entropy; class-weighted cross-entropy (weights inverse to each type's
example count); and targeted augmentation, where the types with fewer examples than the median
are drawn as often as the others and each of their crops is rotated (right angles plus up to
15°), jittered in brightness and contrast and warped by a small random perspective. No flips:
a mirrored defect can be another defect. Training is bounded (64 px crops, a fixed number of
steps) so that it stays seconds on a shared machine.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalens import validation
from anomalens.backbones import load_backbone
from anomalens.validation import ArraySpec

CROP = 64
"""Side of the square crops, in pixels."""
CONTEXT = 1.5
"""A crop's side as a multiple of its box's longer side (at least 24 px)."""
VARIANTS = ("plain", "weighted", "augmented")
LEVEL = "s16"


def crop_pixels(image: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """(CROP, CROP, 3) uint8 square crop of an RGB uint8 image around a box, CONTEXT times
    the box's longer side (the image's edge pixels repeat where the crop leaves it)."""
    x0, y0, x1, y1 = bounds
    side = max(24.0, CONTEXT * max(x1 - x0, y1 - y0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    height, width = image.shape[:2]
    xs = np.clip(np.linspace(cx - side / 2, cx + side / 2, CROP).round().astype(int), 0, width - 1)
    ys = np.clip(np.linspace(cy - side / 2, cy + side / 2, CROP).round().astype(int), 0, height - 1)
    return np.ascontiguousarray(image[ys][:, xs])


def box_crops(image: np.ndarray, bounds: list[tuple[float, float, float, float]]) -> np.ndarray:
    """(len(bounds), CROP, CROP, 3) uint8 `crop_pixels` of `image` around each box."""
    crops = [crop_pixels(image, box) for box in bounds]
    return np.array(crops, dtype=np.uint8).reshape(len(bounds), CROP, CROP, 3)


def region_crop(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`crop_pixels` around the bounding box of an (H, W) bool region, not empty."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return crop_pixels(image, (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """(n, 3, CROP, CROP) backbone input of (n, CROP, CROP, 3) uint8 crops."""
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


def crop(image: np.ndarray, bounds: tuple[float, float, float, float]) -> torch.Tensor:
    """(3, CROP, CROP) normalised crop of an RGB uint8 image around a box (`crop_pixels`)."""
    return normalised(crop_pixels(image, bounds)[None])[0]


class CropNet(nn.Module):
    """EfficientNet-Lite0 up to stride 16, average-pooled, and a linear layer per type."""

    def __init__(self, types: int):
        super().__init__()
        self.backbone = load_backbone("efficientnet_lite0").truncated(LEVEL).requires_grad_(True)
        channels = self.backbone.forward(torch.zeros(1, 3, CROP, CROP), (LEVEL,))[LEVEL].shape[1]
        self.head = nn.Linear(channels, types)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward(crops, (LEVEL,))[LEVEL]
        return self.head(features.mean(dim=(2, 3)))


@dataclass
class CropClassifier:
    """Fine-tunes `CropNet` on labelled crops.

    Args:
        variant: "plain", "weighted" or "augmented" (see the module docstring).
        steps: optimiser steps.
        batch_size: crops per step.
        learning_rate: AdamW's.
        seed: seed of the batches, the augmentation and the head's initialisation.
    """

    variant: str = "plain"
    steps: int = 60
    batch_size: int = 32
    learning_rate: float = 5e-4
    seed: int = 0

    def __post_init__(self):
        validation.choice("variant", self.variant, VARIANTS)
        validation.integer("steps", self.steps, minimum=1)
        validation.integer("batch_size", self.batch_size, minimum=1)
        validation.number("learning_rate", self.learning_rate, above=0)
        validation.integer("seed", self.seed)

    def fit(self, crops: torch.Tensor, targets: np.ndarray) -> "CropClassifier":
        """Train on (n, 3, CROP, CROP) crops of types `targets` (0 .. T-1)."""
        torch.manual_seed(self.seed)
        generator = np.random.default_rng(self.seed)
        counts = np.bincount(targets)
        self.model = CropNet(len(counts))
        # BatchNorm keeps its ImageNet statistics: a few dozen crops cannot re-estimate them.
        self.model.eval()
        weights = None
        if self.variant == "weighted":
            weights = torch.tensor(len(targets) / (len(counts) * counts), dtype=torch.float32)
        rare = counts < np.median(counts)
        draw = np.ones(len(targets))
        if self.variant == "augmented":
            draw = np.where(rare[targets], counts.max() / counts[targets], 1.0)
        draw /= draw.sum()
        optimiser = torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate)
        labels = torch.from_numpy(targets).long()
        for _ in range(self.steps):
            batch = generator.choice(len(targets), min(self.batch_size, len(targets)), p=draw)
            inputs = crops[batch]
            if self.variant == "augmented":
                chosen = torch.from_numpy(rare[targets[batch]])
                inputs = torch.where(
                    chosen[:, None, None, None], augment(inputs, generator), inputs
                )
            loss = F.cross_entropy(self.model(inputs), labels[batch], weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return self

    @torch.no_grad()
    def predict_proba(self, crops: torch.Tensor) -> np.ndarray:
        """(n, T) type probabilities of crops."""
        chunks = [self.model(part).softmax(dim=1) for part in crops.split(128)]
        return torch.cat(chunks).numpy()

    @property
    def types(self) -> int:
        """How many types the trained network tells apart."""
        return self.model.head.out_features

    def document(self) -> dict[str, Any]:
        """JSON-serialisable settings and type count; the weights are in `state()`."""
        return {**dataclasses.asdict(self), "types": self.types}

    def state(self) -> dict[str, np.ndarray]:
        """The trained network's parameters and BatchNorm statistics (scalars as 1-element
        arrays, as saved arrays are)."""
        return {
            key: value.numpy().reshape(value.shape or (1,))
            for key, value in self.model.state_dict().items()
        }

    @staticmethod
    def state_spec(types: int) -> dict[str, ArraySpec]:
        """What `state()` holds for a network telling `types` types apart."""
        return {
            key: ArraySpec(tuple(value.shape), str(value.numpy().dtype))
            for key, value in CropNet(types).state_dict().items()
        }

    @classmethod
    def restore(cls, document: dict[str, Any], arrays: dict[str, np.ndarray]) -> "CropClassifier":
        """The trained classifier that `document()` and `state()` describe."""
        settings = {key: value for key, value in document.items() if key != "types"}
        classifier = cls(**settings)
        classifier.model = CropNet(document["types"]).eval()
        shapes = {key: value.shape for key, value in classifier.model.state_dict().items()}
        classifier.model.load_state_dict(
            {key: torch.from_numpy(value).reshape(shapes[key]) for key, value in arrays.items()}
        )
        return classifier


def augment(crops: torch.Tensor, generator: np.random.Generator) -> torch.Tensor:
    """Each crop rotated by a right angle plus up to 15°, brightness and contrast jittered by
    up to 20%, and warped by a perspective moving each corner up to 10% of the side."""
    count = len(crops)
    angles = generator.integers(0, 4, count) * (math.pi / 2) + generator.uniform(-0.26, 0.26, count)
    cos, sin = np.cos(angles), np.sin(angles)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, CROP), torch.linspace(-1, 1, CROP), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)
    grids = []
    for index in range(count):
        homography = np.array(
            [[cos[index], -sin[index], 0], [sin[index], cos[index], 0], [0, 0, 1]]
        )
        homography[2, :2] = generator.uniform(-0.1, 0.1, 2)  # perspective
        mapped = points @ torch.tensor(homography.T, dtype=torch.float32)
        grids.append((mapped[:, :2] / mapped[:, 2:]).reshape(CROP, CROP, 2))
    warped = F.grid_sample(crops, torch.stack(grids), padding_mode="border", align_corners=True)
    contrast = torch.tensor(generator.uniform(0.8, 1.2, count), dtype=torch.float32)
    brightness = torch.tensor(generator.uniform(-0.2, 0.2, count), dtype=torch.float32)
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    jittered = (warped - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1)
    return jittered.clamp(-1, 1)

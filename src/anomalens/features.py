"""Turn images into backbone feature maps: resize, crop, normalise, batch, forward."""

import hashlib
import numbers
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from anomalens.backbones import Backbone, load_backbone
from anomalens.errors import ConfigError
from anomalens.validation import integer

NATIVE = "native"
"""Resolution setting that keeps each image at its own pixel size (full resolution)."""
MAX_NATIVE_PIXELS = 1024 * 1024
"""At native resolution, larger images are scaled down to this many pixels; at a resolution in
pixels, an image that its short side at that resolution would make larger than max(this,
resolution²) pixels (a long thin strip) is scaled down to that many, its long side capped. Both
bound the backbone's memory per image."""

MAX_RESOLUTION = 4096
"""Largest `resolution` accepted: a square image at it is 16.8 megapixels."""

Resolution = int | str
"""Pixels of the shorter side, or NATIVE."""
TILE_MARGIN = 64
"""Pixels of context each tile reads beyond its own region on every side (rounded up to the
coarsest stride), so that features near tile borders see what the whole image would show."""


@dataclass
class FeatureMaps:
    """Feature maps of one image.

    Attributes:
        levels: level name -> (C, h, w) float32 tensor.
        extent: (height, width) of the original image region the maps cover, in original
            pixels; cropping to a multiple of the stride may leave a thin strip uncovered at the
            bottom and right.
        image_size: (height, width) of the original image.
    """

    levels: dict[str, torch.Tensor]
    extent: tuple[float, float]
    image_size: tuple[int, int]


class FeatureCache:
    """Feature maps already computed, keyed by extractor settings and pixel content.

    Attributes:
        entries: key -> (feature maps, backbone seconds they took).
        saved_seconds: backbone seconds saved by hits so far; adding them to a measured wall
            time gives the time the work would have taken without the cache.
    """

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[FeatureMaps, float]] = {}
        self.saved_seconds = 0.0


_shared_cache: ContextVar[FeatureCache | None] = ContextVar("shared_feature_cache", default=None)


@contextmanager
def shared_feature_cache() -> Iterator[FeatureCache]:
    """Within this block, every extractor keeps the feature maps it computes and reuses them for
    the same pixels under the same settings.

    The evaluation protocol wraps each category in one, so that a test image passes through the
    backbone once per configuration instead of once per shots × seed run. The cache lives until
    the block ends; cached maps are shared, so callers must not modify them in place.
    """
    cache = FeatureCache()
    token = _shared_cache.set(cache)
    try:
        yield cache
    finally:
        _shared_cache.reset(token)


class FeatureExtractor:
    """Runs a registered backbone on images of any size.

    Args:
        backbone: registry name of the backbone.
        resolution: the shorter image side is resized to this many pixels (keep_aspect=True;
            long thin images to fewer, so that they hold no more than max(MAX_NATIVE_PIXELS,
            resolution²) pixels), or both sides are (keep_aspect=False, for methods that need
            aligned grids, rounded to a multiple of the backbone's size multiple and of the
            coarsest level's stride);
            "native" keeps every image at its own size (scaled down to MAX_NATIVE_PIXELS when
            larger), so that small defects keep their pixels.
        levels: feature levels to return; None means the backbone's default levels.
        weights: optional path to the backbone's weights file.
        keep_aspect: keep the aspect ratio and crop to that multiple (top-left anchored), as
            AnomalyDINO does.
        batch_size: images per forward pass; images are batched by preprocessed size.
        tile: None runs the backbone on whole images; a side in pixels runs it on tiles of at
            most that side (plus TILE_MARGIN of context) and stitches their features, which
            bounds the backbone's memory per image; at native resolution it lifts the
            MAX_NATIVE_PIXELS limit, so that large frames keep their full resolution.
    """

    def __init__(
        self,
        backbone: str,
        resolution: Resolution,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        keep_aspect: bool = True,
        batch_size: int = 8,
        tile: int | None = None,
    ):
        if resolution == NATIVE and not keep_aspect:
            raise ConfigError("native resolution keeps each image's shape: it needs keep_aspect")
        if resolution != NATIVE and not (
            isinstance(resolution, numbers.Integral)
            and not isinstance(resolution, bool)
            and 0 < resolution <= MAX_RESOLUTION
        ):
            raise ConfigError(
                f"resolution must be a number of pixels from 1 to {MAX_RESOLUTION} or "
                f"{NATIVE!r}, got {resolution!r}"
            )
        if weights is not None and not isinstance(weights, str | os.PathLike):
            raise ConfigError(f"weights must be a path or None, got {weights!r}")
        integer("batch_size", batch_size, minimum=1)
        if tile is not None:
            integer("tile", tile, minimum=1, maximum=MAX_RESOLUTION)
        self.backbone_name = backbone
        self.resolution = resolution
        self.weights = None if weights is None else os.fspath(weights)
        self.keep_aspect = keep_aspect
        self.batch_size = batch_size
        self.tile = tile
        self.model: Backbone = load_backbone(backbone, weights)
        self.levels = tuple(levels) if levels else self.model.default_levels
        self.model.check_levels(self.levels)
        # Input sides are cropped to multiples of this, so that every level's grid tiles them.
        self.size_multiple = max(
            self.model.size_multiple, *(self.model.strides[level] for level in self.levels)
        )

    def config(self) -> dict[str, object]:
        """The constructor keywords a method shares with its extractor, for saving (`tile` only
        when set: the methods that tile take it)."""
        tile = {} if self.tile is None else {"tile": self.tile}
        return {
            "backbone": self.backbone_name,
            "resolution": self.resolution,
            "levels": list(self.levels),
            "weights": self.weights,
            "batch_size": self.batch_size,
            **tile,
        }

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) an image is resized to before cropping."""
        if not self.keep_aspect:
            side = _round_to(self.resolution, self.size_multiple)
            return side, side
        if self.resolution == NATIVE:
            limit = MAX_NATIVE_PIXELS if self.tile is None else float("inf")
            scale = min(1.0, (limit / (height * width)) ** 0.5)
        else:
            limit = max(MAX_NATIVE_PIXELS, self.resolution**2)
            scale = min(self.resolution / min(height, width), (limit / (height * width)) ** 0.5)
        return max(round(height * scale), 1), max(round(width * scale), 1)

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[float, float]]:
        """Normalised (3, h, w) tensor for an RGB uint8 image, and the original extent covered."""
        height, width = image.shape[:2]
        resized_h, resized_w = self.target_size(height, width)
        multiple = self.size_multiple
        crop_h = max(resized_h // multiple * multiple, multiple)
        crop_w = max(resized_w // multiple * multiple, multiple)
        # One channel at a time, so that the float copy of a large image is a third of its size.
        channels = [
            F.interpolate(
                torch.from_numpy(np.array(image[:, :, channel])).float().div_(255.0)[None, None],
                size=(resized_h, resized_w),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )[0]
            for channel in range(3)
        ]
        tensor = torch.cat(channels)
        if crop_h > resized_h or crop_w > resized_w:
            tensor = F.pad(tensor, (0, max(crop_w - resized_w, 0), 0, max(crop_h - resized_h, 0)))
        tensor = tensor[:, :crop_h, :crop_w]
        mean = torch.tensor(self.model.mean).view(3, 1, 1)
        std = torch.tensor(self.model.std).view(3, 1, 1)
        extent = (
            min(crop_h * height / resized_h, height),
            min(crop_w * width / resized_w, width),
        )
        return (tensor - mean) / std, extent

    def extract(self, images: list[np.ndarray], progress: bool = False) -> list[FeatureMaps]:
        """Feature maps for each RGB uint8 image, in order (with a progress bar if asked)."""
        cache = _shared_cache.get()
        if cache is None:
            return self._extract(images, progress)
        keys = [self._cache_key(image) for image in images]
        cache.saved_seconds += sum(cache.entries[key][1] for key in keys if key in cache.entries)
        missing = {
            key: image for key, image in zip(keys, images, strict=True) if key not in cache.entries
        }
        start = time.perf_counter()
        computed = self._extract(list(missing.values()), progress)
        seconds = (time.perf_counter() - start) / max(len(computed), 1)
        for key, maps in zip(missing, computed, strict=True):
            cache.entries[key] = (maps, seconds)
        return [cache.entries[key][0] for key in keys]

    def _forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone's levels of a (B, 3, H, W) batch, tile by tile when it exceeds `tile`."""
        height, width = batch.shape[-2:]
        multiple = self.size_multiple
        if self.tile is None or max(height, width) <= self.tile:
            return self.model(batch, self.levels)
        core = max(self.tile // multiple * multiple, multiple)
        margin = -(-TILE_MARGIN // multiple) * multiple
        strides = {level: self.model.strides[level] for level in self.levels}
        stitched: dict[str, torch.Tensor] = {}
        for top in range(0, height, core):
            for left in range(0, width, core):
                bottom, right = min(top + core, height), min(left + core, width)
                y0, x0 = max(top - margin, 0), max(left - margin, 0)
                y1, x1 = min(bottom + margin, height), min(right + margin, width)
                maps = self.model(batch[..., y0:y1, x0:x1], self.levels)
                for level, value in maps.items():
                    s = strides[level]
                    if level not in stitched:
                        shape = (*value.shape[:2], height // s, width // s)
                        stitched[level] = value.new_zeros(shape)
                    part = value[..., (top - y0) // s : (bottom - y0) // s, (left - x0) // s :]
                    part = part[..., : (right - left) // s]
                    stitched[level][..., top // s : bottom // s, left // s : right // s] = part
        return stitched

    def _cache_key(self, image: np.ndarray) -> bytes:
        digest = hashlib.blake2b(repr((self.config(), self.keep_aspect, image.shape)).encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.digest()

    @torch.inference_mode()
    def _extract(self, images: list[np.ndarray], progress: bool) -> list[FeatureMaps]:
        prepared = [self.preprocess(image) for image in images]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, (tensor, _) in enumerate(prepared):
            by_shape[tuple(tensor.shape)].append(index)
        outputs: list[FeatureMaps | None] = [None] * len(images)
        bar = tqdm(total=len(images), desc="features", unit="image", disable=not progress)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = torch.stack([prepared[i][0] for i in chunk])
                maps = self._forward(batch)
                for row, index in enumerate(chunk):
                    outputs[index] = FeatureMaps(
                        levels={level: value[row].float() for level, value in maps.items()},
                        extent=prepared[index][1],
                        image_size=images[index].shape[:2],
                    )
                bar.update(len(chunk))
        bar.close()
        return outputs  # type: ignore[return-value]


def stack_levels(levels: dict[str, torch.Tensor], normalize_each: bool = False) -> torch.Tensor:
    """Concatenate (C, h, w) maps on the finest grid, upsampling coarser ones bilinearly.

    With normalize_each, each level is L2-normalised per position first so that no level
    dominates the distance by its channel count or scale.
    """
    size = finest_size(levels)
    parts = [resized(value, size) for value in levels.values()]
    return torch.cat([F.normalize(p, dim=0) for p in parts] if normalize_each else parts, dim=0)


def finest_size(levels: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(h, w) of the level with the most grid positions."""
    return max((tuple(t.shape[-2:]) for t in levels.values()), key=lambda s: s[0] * s[1])


def resized(value: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (C, h, w) map resized bilinearly to `size` (itself when it has that size already)."""
    if tuple(value.shape[-2:]) == tuple(size):
        return value
    return F.interpolate(value[None], size=size, mode="bilinear", align_corners=False)[0]


def _round_to(value: int, multiple: int) -> int:
    return max(round(value / multiple) * multiple, multiple)

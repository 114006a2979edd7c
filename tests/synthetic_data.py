"""Tiny synthetic datasets on disk for the data and evaluation tests."""

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 48
DEFECT = (slice(16, 28), slice(20, 32))
"""Where every synthetic defect (a bright square) lies."""


def write_image(path: Path, seed: int, defective: bool = False) -> None:
    """A grey noisy texture PNG; a defective one has a bright square at DEFECT."""
    rng = np.random.default_rng(seed)
    pixels = (100 + 20 * rng.standard_normal((SIZE, SIZE))).clip(0, 255)
    if defective:
        pixels[DEFECT] = 250
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def write_mask(path: Path, size: int = SIZE) -> None:
    """A binary mask PNG of `size` px marking DEFECT."""
    mask = np.zeros((size, size), np.uint8)
    mask[DEFECT] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


def make_mvtec(root: Path, train: int = 6, good: int = 3, defects: dict | None = None) -> Path:
    """An MVTec-AD category at `root`: `defects` maps defect type -> image count."""
    defects = defects or {"scratch": 2, "hole": 2}
    for index in range(train):
        write_image(root / "train" / "good" / f"{index:03d}.png", seed=index)
    for index in range(good):
        write_image(root / "test" / "good" / f"{index:03d}.png", seed=100 + index)
    for defect_type, count in defects.items():
        for index in range(count):
            write_image(root / "test" / defect_type / f"{index:03d}.png", 200 + index, True)
            write_mask(root / "ground_truth" / defect_type / f"{index:03d}_mask.png")
    return root


def make_folders(root: Path, good: int = 6, defective: int = 3) -> Path:
    """A plain-layout dataset at `root` with masks named like the images."""
    for index in range(good):
        write_image(root / "good" / f"g{index}.png", seed=index)
    for index in range(defective):
        write_image(root / "defective" / f"d{index}.png", 200 + index, True)
        write_mask(root / "masks" / f"d{index}.png")
    return root

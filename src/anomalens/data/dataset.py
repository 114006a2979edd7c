"""The common dataset type: a pool of good reference images and labelled test samples."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from anomalens.data.masks import find_mask
from anomalens.errors import AnomalensError
from anomalens.io.images import is_image_file
from anomalens.metrics.boxes import Bounds

GOOD = "good"
"""Defect type of normal images."""


class DatasetError(AnomalensError):
    """A dataset folder does not have a layout this package can evaluate on."""


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        path: the image file.
        label: 0 for a good image, 1 for a defective one.
        defect_type: "good" or the name of the defect.
        mask_path: pixel ground truth (nonzero = defective); None for good images, which have no
            defective pixels, and for defective images whose mask is missing.
        boxes: ground-truth defect boxes (see `anomalens.data.boxes`); None for good images,
            which have none, and for defective images without usable box ground truth.
        box_types: each box's defect type (the boxes file's fifth field, the COCO category's
            name), None for a box without one; None where `boxes` is None.
    """

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None
    boxes: tuple[Bounds, ...] | None = None
    box_types: tuple[str | None, ...] | None = None


@dataclass
class Dataset:
    """One category to evaluate on.

    Attributes:
        name: category name (the folder name).
        root: the category folder; report paths are relative to the dataset root above it.
        layout: "mvtec" or "folders".
        pool: good images the k-shot references are drawn from, sorted.
        test: the test samples, sorted by path.
        has_masks: whether the dataset has pixel ground truth at all.
        problems: layout problems that do not stop the evaluation (missing or orphan masks, bad
            box files).
        boxes_source: the boxes folder or COCO file the box ground truth came from; None when
            the dataset has none.
    """

    name: str
    root: Path
    layout: str
    pool: list[Path]
    test: list[Sample]
    has_masks: bool
    problems: list[str] = field(default_factory=list)
    boxes_source: Path | None = None


def is_hidden(path: Path) -> bool:
    """Whether `path` is a dot-file or dot-folder (.DS_Store, .ipynb_checkpoints), never data."""
    return path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Sorted image files directly inside `folder`, hidden files excluded."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and is_image_file(path) and not is_hidden(path)
    )


def require_images(folder: Path) -> list[Path]:
    """`list_images(folder)`, or a DatasetError if the folder is missing or has no images."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    images = list_images(folder)
    if not images:
        raise DatasetError(f"{folder}: folder has no images")
    return images


def good_samples(paths: list[Path]) -> list[Sample]:
    """Good test samples for `paths`."""
    return [Sample(path, 0, GOOD) for path in paths]


def defective_samples(
    folder: Path, defect_type: str, mask_folder: Path | None, problems: list[str]
) -> list[Sample]:
    """Defective samples for every image in `folder`, with their masks from `mask_folder`.

    Args:
        folder: folder of images of one defect type.
        defect_type: the defect's name.
        mask_folder: where the masks of this defect type lie; None when the dataset has no
            pixel ground truth.
        problems: missing masks and masks without an image are appended here.
    """
    images = require_images(folder)
    if mask_folder is None:
        return [Sample(path, 1, defect_type) for path in images]
    if not mask_folder.is_dir():
        problems.append(
            f"{mask_folder}: mask folder not found; the {len(images)} {defect_type!r} images are "
            "left out of the pixel metrics"
        )
        return [Sample(path, 1, defect_type) for path in images]
    samples = []
    for path in images:
        mask = find_mask(mask_folder, path.stem)
        if mask is None:
            problems.append(f"{path}: no mask in {mask_folder}; left out of the pixel metrics")
        samples.append(Sample(path, 1, defect_type, mask))
    used = {sample.mask_path for sample in samples}
    problems.extend(
        f"{mask}: mask without an image in {folder}; ignored"
        for mask in list_images(mask_folder)
        if mask not in used
    )
    return samples


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to `root` with forward slashes, or the absolute path outside `root`.

    Paths are compared as written first (made absolute, `..` folded), so that a dataset of
    symbolic links (git-annex, DVC) keeps its own names, and with links resolved second.
    """
    written = Path(os.path.normpath(path.absolute())), Path(os.path.normpath(root.absolute()))
    for candidate, base in (written, (path.resolve(), root.resolve())):
        if candidate.is_relative_to(base):
            return candidate.relative_to(base).as_posix()
    return path.resolve().as_posix()

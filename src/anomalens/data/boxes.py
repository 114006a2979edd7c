"""Box ground truth of the defective test images, from a boxes/ folder or a COCO file.

DATA/boxes/[<defect_type>/]<stem>.txt   one box per line, "x1 y1 x2 y2 type" (spaces or commas;
                                        the type is optional), x2 and y2 inclusive as in DeepPCB,
                                        whose masks are the union of these boxes with the last
                                        row and column included
DATA/annotations.json                   COCO: "bbox" [x, y, width, height], images matched to
                                        test images by "file_name" (see `coco_boxes`)

A bad file leaves its images out of the box figures and is listed in the dataset's problems;
it never stops the evaluation. Good images have no boxes; a box file for one is not read.
"""

import dataclasses
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from anomalens.data.dataset import Dataset, DatasetError, Sample
from anomalens.metrics.boxes import Bounds

BOX_FOLDER = "boxes"
COCO_FILE = "annotations.json"
COCO_LISTS = ("images", "annotations")
LINE_FORMAT = "'x1 y1 x2 y2 type' with whole numbers, 0 <= x1 <= x2 and 0 <= y1 <= y2"

TypedBox = tuple[Bounds, str | None]
"""A box's bounds and its defect type (None when the source names none)."""
Found = dict[Sample, tuple[TypedBox, ...] | None]
"""Box ground truth per defective sample; None for a sample whose boxes are unusable (noted)."""


def with_boxes(dataset: Dataset, coco_file: Path | None = None) -> Dataset:
    """`dataset` with box ground truth on its defective samples: from `coco_file` when given,
    else from its boxes/ folder, else from its annotations.json; unchanged when it has none.

    Defective images left without boxes, and every problem with the boxes, are appended to the
    dataset's problems.
    """
    candidates = [coco_file] if coco_file else [dataset.root / BOX_FOLDER, dataset.root / COCO_FILE]
    source = next((path for path in candidates if path.exists()), None)
    if source is None:
        return dataset
    problems: list[str] = []
    defective = [sample for sample in dataset.test if sample.label == 1]
    if source.is_dir():
        found = folder_boxes(source, defective, problems)
    else:
        found = coco_boxes(source, dataset.test, problems)
    problems += [
        f"{sample.path}: no box ground truth in {source}; left out of the box figures"
        for sample in defective
        if sample not in found
    ]
    test = [
        sample if found.get(sample) is None else typed(sample, found[sample])
        for sample in dataset.test
    ]
    return dataclasses.replace(
        dataset, test=test, problems=dataset.problems + problems, boxes_source=source
    )


def typed(sample: Sample, boxes: tuple[TypedBox, ...]) -> Sample:
    """`sample` with these boxes and their types."""
    bounds = tuple(bound for bound, _ in boxes)
    return dataclasses.replace(sample, boxes=bounds, box_types=tuple(kind for _, kind in boxes))


def folder_boxes(folder: Path, defective: list[Sample], problems: list[str]) -> Found:
    """Boxes of each defective sample from `folder`/<defect_type>/<stem>.txt, else
    `folder`/<stem>.txt; a file that two samples could claim is refused (noted in `problems`)."""
    claims: dict[Path, list[Sample]] = {}
    for sample in defective:
        name = f"{sample.path.stem}.txt"
        paths = [folder / sample.defect_type / name, folder / name]
        path = next((path for path in paths if path.is_file()), None)
        if path is not None:
            claims.setdefault(path, []).append(sample)
    found: Found = {}
    for path, samples in claims.items():
        if len(samples) > 1:
            names = ", ".join(str(sample.path) for sample in samples)
            problems.append(
                f"{path}: could be the boxes of any of {names}; move it to "
                f"{folder}/<defect_type>/; these images are left out of the box figures"
            )
            found |= dict.fromkeys(samples)
            continue
        try:
            found[samples[0]] = read_typed_box_file(path)
        except DatasetError as error:
            problems.append(f"{error}; {samples[0].path.name} is left out of the box figures")
            found[samples[0]] = None
    return found


def read_box_file(path: Path) -> tuple[Bounds, ...]:
    """The boxes of a boxes/ text file as exclusive bounds; DatasetError names the file and the
    first bad line."""
    return tuple(bounds for bounds, _ in read_typed_box_file(path))


def read_typed_box_file(path: Path) -> tuple[TypedBox, ...]:
    """The boxes of a boxes/ text file as exclusive bounds with their types (the optional fifth
    field); DatasetError names the file and the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the boxes file ({error})") from None
    boxes = []
    for number, line in enumerate(lines, start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            x1, y1, x2, y2 = map(int, fields[:4])
            valid = len(fields) in (4, 5) and 0 <= x1 <= x2 and 0 <= y1 <= y2
        except ValueError:  # not a whole number, or fewer than four fields
            valid = False
        if not valid:
            raise DatasetError(f"{path}, line {number}: expected {LINE_FORMAT}, got {line!r}")
        boxes.append(((x1, y1, x2 + 1, y2 + 1), fields[4] if len(fields) == 5 else None))
    return tuple(boxes)


def coco_boxes(path: Path, test: list[Sample], problems: list[str]) -> Found:
    """Boxes of each defective sample named by a COCO file's images.

    An image's "file_name" (slashes or backslashes) names the test image whose path ends with
    it: "0001.png", "crack/0001.png" or "test/crack/0001.png"; a name that fits several test
    images is refused. Names that fit no defective test image (good images, other categories)
    are ignored. Problems are appended to `problems`.
    """
    try:
        images, annotations, categories = read_coco(path)
    except DatasetError as error:
        problems.append(f"{error}; no boxes read")
        return dict.fromkeys(sample for sample in test if sample.label == 1)
    owners = image_owners(path, images, test, problems)
    names = category_names(categories)
    boxes: dict[Sample, list[TypedBox]] = {sample: [] for sample in owners.values()}
    bad: set[Sample] = set()
    for index, annotation in enumerate(annotations):
        key = annotation.get("image_id") if isinstance(annotation, dict) else None
        sample = owners.get(key) if isinstance(key, int | str) else None
        if sample is None or sample in bad:
            continue
        try:
            bounds = coco_bounds(annotation.get("bbox"))
        except ValueError:
            problems.append(
                f"{path}: annotations[{index}]: 'bbox' must be [x, y, width, height] with "
                f"x, y, width, height >= 0; {sample.path.name} is left out of the box figures"
            )
            bad.add(sample)
            continue
        category = annotation.get("category_id")
        boxes[sample].append(
            (bounds, names.get(category) if isinstance(category, int | str) else None)
        )
    return {sample: None if sample in bad else tuple(found) for sample, found in boxes.items()}


def read_coco(path: Path) -> tuple[list[Any], list[Any], list[Any]]:
    """The "images", "annotations" and (possibly empty) "categories" lists of a COCO file;
    DatasetError names the file (and the line of a JSON syntax error)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the COCO file ({error})") from None
    lists = [document.get(key) if isinstance(document, dict) else None for key in COCO_LISTS]
    if not all(isinstance(entries, list) for entries in lists):
        raise DatasetError(f"{path}: not a COCO file (no 'images' and 'annotations' lists)")
    categories = document.get("categories")
    return lists[0], lists[1], categories if isinstance(categories, list) else []


def category_names(categories: list[Any]) -> dict[int | str, str]:
    """COCO category id -> name, for the well-formed entries."""
    return {
        entry["id"]: entry["name"]
        for entry in categories
        if isinstance(entry, dict)
        and isinstance(entry.get("id"), int | str)
        and isinstance(entry.get("name"), str)
    }


def image_owners(
    path: Path, images: list[Any], test: list[Sample], problems: list[str]
) -> dict[int | str, Sample]:
    """COCO image id -> the defective test sample its file_name names, where it names one test
    image only."""
    by_ending: dict[tuple[str, ...], list[Sample]] = {}
    for sample in test:
        parts = Path(os.path.normpath(sample.path.absolute())).parts
        for start in range(len(parts)):
            by_ending.setdefault(parts[start:], []).append(sample)
    owners: dict[int | str, Sample] = {}
    for index, image in enumerate(images):
        name = image.get("file_name") if isinstance(image, dict) else None
        key = image.get("id") if isinstance(image, dict) else None
        if not isinstance(name, str) or not isinstance(key, int | str):
            problems.append(f"{path}: images[{index}] needs an 'id' and a 'file_name'; ignored")
            continue
        fits = by_ending.get(PurePosixPath(name.replace("\\", "/")).parts, [])
        if len(fits) > 1:
            problems.append(
                f"{path}: images[{index}] file_name {name!r} fits {len(fits)} test images; "
                "give more of its path; ignored"
            )
        elif fits and fits[0].label == 1:
            owners[key] = fits[0]
    return owners


def coco_bounds(bbox: object) -> Bounds:
    """A COCO [x, y, width, height] as exclusive bounds; ValueError when it is not one."""
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ValueError(bbox)
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in bbox):
        raise ValueError(bbox)
    x, y, width, height = bbox
    if not min(x, y, width, height) >= 0:  # also refuses NaN
        raise ValueError(bbox)
    return (x, y, x + width, y + height)

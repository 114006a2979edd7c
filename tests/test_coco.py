"""COCO export: the file loads in pycocotools and its detections match the results."""

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from anomalens.formats.coco import coco_detections, rle_encode, write_coco
from anomalens.results import Box, Result

DEFECT_TYPES = ["crack", "blowhole"]


def region(shape: tuple[int, int], *pixels: tuple[slice | int, slice | int]) -> np.ndarray:
    """A boolean mask of `shape` with the given (rows, columns) index pairs set."""
    mask = np.zeros(shape, dtype=bool)
    for rows, columns in pixels:
        mask[rows, columns] = True
    return mask


def box_around(mask: np.ndarray, score: float, **labels) -> Box:
    """The box of a one-region `mask`, with `score` and optional type `labels`."""
    rows, columns = np.nonzero(mask)
    return Box(
        x0=int(columns.min()),
        y0=int(rows.min()),
        x1=int(columns.max()) + 1,
        y1=int(rows.max()) + 1,
        score=score,
        area=int(mask.sum()),
        **labels,
    )


def make_result(mask: np.ndarray, boxes: list[Box], path: str) -> Result:
    """A result for a hand-made `mask` and its `boxes`."""
    anomaly_map = mask.astype(np.float32)
    return Result(
        score=float(anomaly_map.max()),
        anomaly_map=anomaly_map,
        mask=mask,
        boxes=boxes,
        is_anomalous=bool(boxes),
        path=path,
    )


SHAPE = (40, 60)
REGIONS = [
    region(SHAPE, (slice(5, 15), slice(10, 30))),
    region(SHAPE, (20, 40), (21, 41), (22, 42)),  # diagonal: one region in 8-connectivity
    region(SHAPE, (slice(30, 38), 2), (37, slice(2, 10))),  # an L around the next speck
    region(SHAPE, (31, 8)),
]


@pytest.fixture
def results() -> list[Result]:
    """A defective image with typed, untyped and "unknown" regions, and a good one."""
    boxes = [
        box_around(REGIONS[0], 3.0, defect_type="crack", similarity=0.9),
        box_around(REGIONS[1], 2.0),
        box_around(REGIONS[2], 1.5, defect_type="unknown", similarity=0.2),
        box_around(REGIONS[3], 1.0, defect_type="blowhole", similarity=0.8),
    ]
    defective = make_result(np.logical_or.reduce(REGIONS), boxes, "bad.png")
    return [defective, make_result(np.zeros((24, 32), dtype=bool), [], "good.png")]


@pytest.fixture
def coco(tmp_path, results) -> COCO:
    """The results written as a COCO file and loaded back by pycocotools."""
    path = write_coco(tmp_path / "detections.json", results, ["bad.png", "good.png"], DEFECT_TYPES)
    return COCO(str(path))


def test_categories_are_the_defect_types_then_anomaly(coco):
    names = [category["name"] for category in coco.loadCats(coco.getCatIds())]
    assert names == ["crack", "blowhole", "anomaly"]


def test_images_carry_file_name_size_score_and_verdict(coco, results):
    first, second = coco.loadImgs(coco.getImgIds())
    assert (first["file_name"], first["width"], first["height"]) == ("bad.png", 60, 40)
    assert (second["file_name"], second["width"], second["height"]) == ("good.png", 32, 24)
    assert (first["verdict"], second["verdict"]) == ("NG", "OK")
    assert first["score"] == pytest.approx(results[0].score)


def test_each_box_becomes_an_annotation_with_its_bbox_score_and_category(coco):
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [annotation["bbox"] for annotation in annotations] == [
        [10, 5, 20, 10],
        [40, 20, 3, 3],
        [2, 30, 8, 8],
        [8, 31, 1, 1],
    ]
    assert [annotation["score"] for annotation in annotations] == [3.0, 2.0, 1.5, 1.0]
    categories = [coco.loadCats(a["category_id"])[0]["name"] for a in annotations]
    assert categories == ["crack", "anomaly", "anomaly", "blowhole"]
    assert coco.getAnnIds(imgIds=[2]) == []


def test_segmentation_decodes_to_the_boxed_region_only(coco):
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    for annotation, expected in zip(annotations, REGIONS, strict=True):
        decoded = mask_utils.decode(annotation["segmentation"]).astype(bool)
        np.testing.assert_array_equal(decoded, expected)
        assert annotation["area"] == expected.sum()
        assert mask_utils.toBbox(annotation["segmentation"]).tolist() == annotation["bbox"]


def test_load_res_accepts_the_detections(coco):
    detections = copy.deepcopy(coco.dataset["annotations"])  # loadRes edits its input
    loaded = coco.loadRes(detections)
    assert len(loaded.getAnnIds()) == 4
    assert loaded.loadAnns(1)[0]["segmentation"] == coco.loadAnns(1)[0]["segmentation"]


def test_rle_matches_pycocotools_encoding():
    rng = np.random.default_rng(0)
    for _ in range(100):
        height, width = rng.integers(1, 50, size=2)
        mask = rng.random((height, width)) < rng.random()
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_encode(mask) == {"size": [height, width], "counts": expected["counts"].decode()}


def test_one_path_per_result_is_required(results):
    with pytest.raises(ValueError):
        coco_detections(results, ["bad.png"], DEFECT_TYPES)

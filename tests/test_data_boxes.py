"""Box ground truth: a boxes/ folder of DeepPCB-style text files, or a COCO file."""

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import make_folders, make_mvtec

from anomalens.data import DatasetError, discover
from anomalens.data.boxes import read_box_file
from anomalens.data.masks import load_mask
from anomalens.io.images import load_image

DEEPPCB = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb_20085"


def write_boxes(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def boxes_of(root: Path, boxes: Path | None = None) -> tuple[dict[str, tuple | None], list[str]]:
    """Defective test image (path relative to `root`) -> its boxes; and the dataset problems."""
    [dataset] = discover(root, boxes)
    found = {s.path.relative_to(root).as_posix(): s.boxes for s in dataset.test if s.label}
    return found, dataset.problems


def test_box_lines_are_inclusive_pixel_bounds_read_as_exclusive_ones(tmp_path):
    path = write_boxes(tmp_path / "a.txt", "20 16 31 27 scratch\n\n5,6,5,6,1\n0 0 9 9\n")
    assert read_box_file(path) == ((20, 16, 32, 28), (5, 6, 6, 7), (0, 0, 10, 10))


@pytest.mark.parametrize(
    "line",
    ["20 16 31", "20 16 31 27 a b", "20 16 x 27 a", "31 16 20 27 a", "-1 0 3 3 a", "2.5 0 3 3"],
)
def test_a_bad_box_line_is_an_error_naming_the_file_and_line(tmp_path, line):
    path = write_boxes(tmp_path / "a.txt", f"0 0 3 3 a\n{line}\n")
    with pytest.raises(DatasetError, match=r"a\.txt, line 2: expected 'x1 y1 x2 y2 type'"):
        read_box_file(path)


def test_boxes_folder_gives_each_defective_image_its_boxes(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    for defect_type in ("hole", "scratch"):
        for index in range(2):
            write_boxes(root / "boxes" / defect_type / f"{index:03d}.txt", "20 16 31 27 x\n")
    write_boxes(root / "boxes" / "hole" / "001.txt", "")  # a defective image with no box
    [dataset] = discover(root)
    assert dataset.boxes_source == root / "boxes" and dataset.problems == []
    assert [s.boxes for s in dataset.test if s.label == 0] == [None] * 3
    found, _ = boxes_of(root)
    assert found == {
        "test/hole/000.png": ((20, 16, 32, 28),),
        "test/hole/001.png": (),
        "test/scratch/000.png": ((20, 16, 32, 28),),
        "test/scratch/001.png": ((20, 16, 32, 28),),
    }


def test_flat_boxes_folder_matches_by_stem_and_refuses_a_stem_two_images_share(tmp_path):
    root = make_mvtec(tmp_path / "tile", defects={"hole": 2, "scratch": 1})
    (root / "test" / "hole" / "001.png").rename(root / "test" / "hole" / "h1.png")
    (root / "ground_truth" / "hole" / "001_mask.png").rename(
        root / "ground_truth" / "hole" / "h1_mask.png"
    )
    write_boxes(root / "boxes" / "h1.txt", "1 2 3 4 hole\n")
    write_boxes(root / "boxes" / "000.txt", "1 2 3 4 hole\n")  # test/hole/000 or test/scratch/000?
    found, problems = boxes_of(root)
    assert found == {
        "test/hole/000.png": None,
        "test/hole/h1.png": ((1, 2, 4, 5),),
        "test/scratch/000.png": None,
    }
    [problem] = problems
    assert "000.txt: could be the boxes of any of" in problem and "<defect_type>" in problem


def test_bad_box_file_and_missing_box_file_are_problems_not_errors(tmp_path):
    root = make_folders(tmp_path / "parts", good=6, defective=3)
    write_boxes(root / "boxes" / "d0.txt", "1 2 3 4 a\n")
    bad = write_boxes(root / "boxes" / "d1.txt", "1 2 3 4 a\n1 2 three 4 a\n")
    found, problems = boxes_of(root)
    assert found == {
        "defective/d0.png": ((1, 2, 4, 5),),
        "defective/d1.png": None,
        "defective/d2.png": None,
    }
    assert (
        problems[0].startswith(f"{bad}, line 2: expected") and "d1.png is left out" in problems[0]
    )
    assert problems[1] == (
        f"{root / 'defective' / 'd2.png'}: no box ground truth in {root / 'boxes'}; "
        "left out of the box figures"
    )
    assert len(problems) == 2


def test_dataset_without_box_ground_truth_has_none(tmp_path):
    [dataset] = discover(make_mvtec(tmp_path / "tile"))
    assert dataset.boxes_source is None and all(s.boxes is None for s in dataset.test)


def coco(images: list[str], annotations: list[tuple[int, list]]) -> dict:
    return {
        "images": [{"id": number, "file_name": name} for number, name in enumerate(images, 1)],
        "annotations": [
            {"id": n, "image_id": i, "bbox": b} for n, (i, b) in enumerate(annotations, 1)
        ],
        "categories": [{"id": 1, "name": "defect"}],
    }


def test_annotations_json_is_read_as_coco_with_images_matched_by_the_end_of_their_path(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    names = ["hole/000.png", "test/hole/001.png", "test\\scratch\\000.png", "good/000.png"]
    annotations = [
        (1, [20, 16, 12, 12]),
        (1, [0.5, 1.5, 2, 3]),
        (3, [1, 2, 3, 4]),
        (4, [1, 1, 1, 1]),
    ]
    (root / "annotations.json").write_text(json.dumps(coco(names, annotations)))
    found, problems = boxes_of(root)
    assert found == {
        "test/hole/000.png": ((20, 16, 32, 28), (0.5, 1.5, 2.5, 4.5)),
        "test/hole/001.png": (),  # listed without annotations: no defect box
        "test/scratch/000.png": ((1, 2, 4, 6),),
        "test/scratch/001.png": None,  # not listed
    }
    assert problems == [
        f"{root / 'test/scratch/001.png'}: no box ground truth in {root / 'annotations.json'}; "
        "left out of the box figures"
    ]


def test_coco_file_name_fitting_several_test_images_is_refused(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    (root / "annotations.json").write_text(json.dumps(coco(["000.png"], [(1, [1, 1, 2, 2])])))
    found, problems = boxes_of(root)
    assert set(found.values()) == {None}
    assert "images[0] file_name '000.png' fits 3 test images" in problems[0]


def test_a_bad_coco_bbox_leaves_only_its_image_out(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    names = ["hole/000.png", "hole/001.png"]
    document = coco(names, [(1, [1, 1, -2, 2]), (1, [1, 1, 2, 2]), (2, [1, 1, 2, 2])])
    (root / "annotations.json").write_text(json.dumps(document))
    found, problems = boxes_of(root)
    assert found["test/hole/000.png"] is None and found["test/hole/001.png"] == ((1, 1, 3, 3),)
    assert "annotations.json: annotations[0]: 'bbox' must be [x, y, width, height]" in problems[0]


def test_invalid_coco_json_is_a_problem_naming_the_file_and_line(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    (root / "annotations.json").write_text('{"images": [],\n "annotations": [,]}')
    found, problems = boxes_of(root)
    assert set(found.values()) == {None}
    assert problems == [
        f"{root / 'annotations.json'}, line 2: not valid JSON (Expecting value); no boxes read"
    ]


def test_a_coco_file_given_replaces_the_boxes_folder_and_must_exist(tmp_path):
    root = make_mvtec(tmp_path / "tile", defects={"hole": 1})
    write_boxes(root / "boxes" / "hole" / "000.txt", "1 2 3 4 hole\n")
    given = tmp_path / "labels.json"
    given.write_text(json.dumps(coco(["hole/000.png"], [(1, [5, 5, 5, 5])])))
    assert boxes_of(root)[0] == {"test/hole/000.png": ((1, 2, 4, 5),)}
    assert boxes_of(root, given)[0] == {"test/hole/000.png": ((5, 5, 10, 10),)}
    with pytest.raises(DatasetError, match=r"absent\.json: boxes file not found"):
        discover(root, tmp_path / "absent.json")


@pytest.mark.integration
@pytest.mark.skipif(not DEEPPCB.is_dir(), reason="needs ../shared/data/deeppcb_20085")
def test_deeppcb_masks_are_the_union_of_its_boxes_read_with_inclusive_ends():
    [dataset] = discover(DEEPPCB)
    assert dataset.boxes_source == DEEPPCB / "boxes" and dataset.problems == []
    defective = [sample for sample in dataset.test if sample.label]
    assert all(sample.boxes for sample in defective)
    for sample in defective:
        truth = load_mask(sample.mask_path, load_image(sample.path).shape[:2])
        union = np.zeros_like(truth)
        for x0, y0, x1, y1 in sample.boxes:
            union[y0:y1, x0:x1] = True
        assert np.array_equal(union, truth), sample.path


def test_each_box_keeps_its_type_from_the_fifth_field_or_the_coco_category(tmp_path):
    root = make_mvtec(tmp_path / "tile")
    write_boxes(root / "boxes" / "hole" / "000.txt", "20 16 31 27 open\n0 0 3 3\n")
    [dataset] = discover(root)
    [sample] = [s for s in dataset.test if s.path.name == "000.png" and s.defect_type == "hole"]
    assert sample.box_types == ("open", None)
    document = coco(["hole/000.png"], [(1, [1, 2, 3, 4]), (1, [5, 5, 2, 2])])
    document["annotations"][1]["category_id"] = 1
    document["annotations"][0]["category_id"] = 7  # no such category: untyped
    (tmp_path / "coco.json").write_text(json.dumps(document))
    [dataset] = discover(root, tmp_path / "coco.json")
    [sample] = [s for s in dataset.test if s.boxes]
    assert sample.boxes == ((1, 2, 4, 6), (5, 5, 7, 7)) and sample.box_types == (None, "defect")

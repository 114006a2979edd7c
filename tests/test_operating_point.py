"""Figures at the detector's own thresholds: false alarms, recall per defect type and boxes,
counted one prediction at a time and reported in metrics.json and report.md."""

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import make_mvtec

from anomalens.cli import main
from anomalens.data import Sample
from anomalens.evaluation.operating_point import OPERATING_METRICS, OperatingPoint
from anomalens.results import Box, Result

FAST = [
    *("--method", "anomalydino", "--resolution", "64"),
    *("--param", "rotation=false", "--param", "masking=false"),
]
SQUARE = "20 16 31 27 square\n"
"""The synthetic defect's box in the boxes/ text format (inclusive ends)."""


def result(flagged: bool, *boxes: tuple[int, int, int, int, float]) -> Result:
    empty = np.zeros((1, 1), np.float32)
    predicted = [Box(x0, y0, x1, y1, score, area=1) for x0, y0, x1, y1, score in boxes]
    return Result(0.0, empty, empty > 0, predicted, is_anomalous=flagged)


def sample(label: int, defect_type: str, boxes: tuple | None = None) -> Sample:
    return Sample(Path(f"{defect_type}.png"), label, defect_type, boxes=boxes)


def test_counts_verdicts_per_defect_type_and_matches_boxes_one_to_one():
    counts = OperatingPoint()
    counts.update(sample(0, "good"), result(True, (0, 0, 5, 5, 0.9), (9, 9, 12, 12, 0.5)))
    counts.update(sample(0, "good"), result(False))
    truth = ((0, 0, 10, 10), (20, 20, 30, 30))
    duplicate = [(0, 0, 10, 10, 0.9), (1, 1, 10, 10, 0.8), (50, 50, 60, 60, 0.7)]
    counts.update(sample(1, "crack", truth), result(True, *duplicate))
    counts.update(sample(1, "crack"), result(False, (0, 0, 10, 10, 0.9)))  # no box truth
    counts.update(sample(1, "hole", ()), result(True))
    assert counts.figures() == {
        "false_alarm_rate": 1 / 2,
        "recall": 2 / 3,
        "box_recall": 1 / 2,
        "box_precision": 1 / 3,
        "false_boxes_per_good_image": 2 / 2,
    }
    assert counts.to_dict() == {
        "good_images": 2,
        "false_alarms": 1,
        "defective_images": 3,
        "flagged_defective": 2,
        "boxes_on_good_images": 2,
        "by_defect_type": {
            "crack": {"images": 2, "flagged": 1, "recall": 0.5},
            "hole": {"images": 1, "flagged": 1, "recall": 1.0},
        },
        "boxes": {
            "images": 2,
            "truth": 2,
            "matched": 1,
            "predicted_on_defective": 3,
        },
    }


def test_without_box_ground_truth_the_box_figures_are_none():
    counts = OperatingPoint()
    counts.update(sample(0, "good"), result(False, (0, 0, 5, 5, 0.9)))
    counts.update(sample(1, "crack"), result(True, (0, 0, 5, 5, 0.9)))
    figures = counts.figures()
    assert (figures["false_alarm_rate"], figures["recall"]) == (0.0, 1.0)
    assert (figures["box_recall"], figures["box_precision"]) == (None, None)
    assert figures["false_boxes_per_good_image"] == 1.0  # false on any dataset
    assert counts.to_dict()["boxes"] is None


def test_a_box_on_defective_images_without_predictions_has_no_precision():
    counts = OperatingPoint()
    counts.update(sample(0, "good"), result(False))
    counts.update(sample(1, "crack", ((0, 0, 5, 5),)), result(False))
    figures = counts.figures()
    assert figures["box_recall"] == 0.0 and figures["box_precision"] is None
    assert figures["false_boxes_per_good_image"] == 0.0


@pytest.fixture(scope="module")
def boxed_report(tmp_path_factory) -> tuple[Path, dict]:
    """(data, metrics.json) of an evaluation of a category with a boxes/ folder, one bad file."""
    data = make_mvtec(tmp_path_factory.mktemp("boxes") / "tile")
    for defect_type in ("hole", "scratch"):
        for index in range(2):
            (data / "boxes" / defect_type).mkdir(parents=True, exist_ok=True)
            (data / "boxes" / defect_type / f"{index:03d}.txt").write_text(SQUARE)
    (data / "boxes" / "scratch" / "001.txt").write_text(SQUARE + "20 16 31\n")
    out = data.parent / "report"
    options = ["--shots", "2", "--seeds", "0", "1", "-o", str(out)]
    assert main(["evaluate", str(data), *FAST, *options]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_metrics_json_reports_the_operating_point_of_each_run(boxed_report):
    _, report = boxed_report
    assert report["boxes"] == {"tile": "boxes"}
    for run in report["runs"]:
        figures, counts = run["metrics"], run["operating_point"]
        assert (counts["good_images"], counts["defective_images"]) == (3, 4)
        assert figures["false_alarm_rate"] == counts["false_alarms"] / 3
        assert figures["recall"] == counts["flagged_defective"] / 4
        assert set(counts["by_defect_type"]) == {"hole", "scratch"}
        hole = counts["by_defect_type"]["hole"]
        assert hole["images"] == 2 and hole["recall"] == hole["flagged"] / 2
        boxes = counts["boxes"]
        assert (boxes["images"], boxes["truth"]) == (3, 3)  # scratch/001 has a bad file
        assert figures["box_recall"] == boxes["matched"] / 3
        if boxes["predicted_on_defective"]:
            assert figures["box_precision"] == boxes["matched"] / boxes["predicted_on_defective"]
        assert figures["false_boxes_per_good_image"] == counts["boxes_on_good_images"] / 3


def test_a_bad_box_file_is_a_problem_naming_file_and_line_not_a_failure(boxed_report):
    out, report = boxed_report
    [problem] = report["problems"]
    assert "boxes/scratch/001.txt, line 2: expected 'x1 y1 x2 y2 type'" in problem
    assert "001.png is left out of the box figures" in problem
    assert problem in (out / "report.md").read_text()


def test_summary_gives_mean_and_std_of_the_figures_and_of_recall_per_defect_type(boxed_report):
    _, report = boxed_report
    [summary] = report["summary"]
    recalls = [run["metrics"]["recall"] for run in report["runs"]]
    assert summary["mean"]["recall"] == pytest.approx(
        {"mean": np.mean(recalls), "std": np.std(recalls)}
    )
    assert set(OPERATING_METRICS) <= set(summary["mean"])
    assert set(summary["recall_by_type"]["tile"]) == {"hole", "scratch"}
    hole = [run["operating_point"]["by_defect_type"]["hole"]["recall"] for run in report["runs"]]
    assert summary["recall_by_type"]["tile"]["hole"]["mean"] == pytest.approx(np.mean(hole))


def test_report_md_has_the_operating_point_section_with_counts(boxed_report):
    out, report = boxed_report
    text = (out / "report.md").read_text()
    assert "## At the detector's own thresholds" in text
    assert "| shots | category | false alarm rate | recall | box recall |" in text
    assert "| 2 | tile | hole | " in text
    counts = report["runs"][0]["operating_point"]
    assert f"| {counts['false_alarms']} of 3 | {counts['flagged_defective']} of 4 |" in text


def test_a_coco_file_given_on_the_command_line_supplies_the_boxes(tmp_path):
    data = make_mvtec(tmp_path / "tile", defects={"hole": 2})
    images = [{"id": 1, "file_name": "hole/000.png"}, {"id": 2, "file_name": "hole/001.png"}]
    annotations = [{"id": 1, "image_id": 1, "bbox": [20, 16, 12, 12]}]
    coco = tmp_path / "labels.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations}))
    out = tmp_path / "report"
    options = ["--shots", "1", "--seeds", "0", "--boxes", str(coco), "-o", str(out)]
    assert main(["evaluate", str(data), *FAST, *options]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["boxes"] == {"tile": str(coco.resolve())} and report["problems"] == []
    [run] = report["runs"]
    assert run["operating_point"]["boxes"]["truth"] == 1
    assert run["operating_point"]["boxes"]["images"] == 2

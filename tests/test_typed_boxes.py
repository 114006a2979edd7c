"""Typed boxes scored as DeepPCB scores them, and the end-to-end `evaluate-types --boxes`."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_defects_cli import write_category

from anomalens.cli import main
from anomalens.data import Sample
from anomalens.defect_types.supervised import CROP, CropClassifier
from anomalens.evaluation.typed_boxes import TypedBoxCounts, average_precision
from anomalens.evaluation.typed_report import OVERALL
from anomalens.evaluation.typed_runs import (
    ALL,
    EmbeddedImage,
    draw_examples,
    run_episodes,
    truth_regions,
)

TRUTH = [((0, 0, 10, 10), "open"), ((20, 20, 30, 30), "short"), ((40, 0, 50, 10), "open")]


def test_a_box_counts_only_on_a_box_of_its_own_type_above_iou_one_third():
    counts = TypedBoxCounts()
    predicted = [
        ((0, 0, 10, 12), "open", 0.9),  # IoU 0.83 with an open: right
        ((20, 20, 30, 30), "open", 0.8),  # on the short, named open: wrong
        ((40, 0, 50, 4), "open", 0.7),  # IoU 0.4 with the other open: right
        ((0, 0, 10, 10), "open", 0.6),  # a second box on the matched open: wrong
    ]
    counts.update(TRUTH, predicted)
    figures = counts.figures()
    assert figures["precision"] == pytest.approx(2 / 4) and figures["recall"] == pytest.approx(
        2 / 3
    )
    assert figures["f_score"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert figures["box_recall"] == 1.0  # class-agnostic: the short was found, wrongly named
    by_type = counts.by_type()
    assert by_type["open"]["precision"] == 0.5 and by_type["open"]["recall"] == 1
    assert by_type["short"] == {"precision": None, "recall": 0.0, "f_score": 0.0, "ap": 0.0}


def test_unknown_boxes_claim_no_type_and_good_images_count_false_boxes():
    counts = TypedBoxCounts()
    counts.update(TRUTH, [((0, 0, 10, 10), "unknown", 0.9), ((20, 20, 30, 30), "short", 0.5)])
    counts.update(None, [((0, 0, 5, 5), "unknown", 0.4), ((9, 9, 19, 19), "open", 0.3)])
    counts.update(None, [])
    figures = counts.figures()
    assert figures["precision"] == 1.0 and figures["recall"] == pytest.approx(1 / 3)
    assert figures["box_recall"] == pytest.approx(2 / 3)
    assert figures["unknown_rate"] == 0.5 and figures["found_called_unknown"] == 0.5
    assert figures["false_boxes_per_good_image"] == 1.0
    assert figures["good_boxes_called_unknown"] == 0.5


def test_average_precision_is_the_area_under_the_monotone_precision_recall_curve():
    # ranked: right, wrong, right; 4 ground-truth boxes: AP = (1 + 2/3) / 4
    hits = [(0.9, True), (0.5, True), (0.8, False)]
    assert average_precision(hits, 4) == pytest.approx((1 + 2 / 3) / 4)
    assert average_precision([], 3) == 0.0 and average_precision(hits, 0) is None
    # ranked: wrong, right, right; precision 0, 1/2, 2/3 is raised to 2/3 at the first right box
    assert average_precision([(0.1, True), (0.9, False), (0.5, True)], 2) == pytest.approx(2 / 3)


def embedded(kind: str, truth: bool, seed: int) -> EmbeddedImage:
    """A defective image with one `kind` defect (box and embedding) and a box found on it, or
    a good image with one false box; embeddings are the type's axis plus a little noise."""
    axis = {"open": 0, "short": 1}[kind]
    row = np.eye(4, dtype=np.float32)[axis] + np.random.default_rng(seed).normal(0, 0.05, 4)
    row /= np.linalg.norm(row)
    sample = Sample(Path(f"{seed}.png"), int(truth), kind if truth else "good")
    crop = np.full((1, CROP, CROP, 3), 255 * axis, np.uint8)  # open black, short white
    return EmbeddedImage(
        sample,
        [((0, 0, 10, 10), kind)] if truth else None,
        row[None] if truth else np.empty((0, 4)),
        crop if truth else np.empty((0, CROP, CROP, 3), np.uint8),
        [((0, 0, 10, 9), 1.0)],
        row[None],
        crop,
    )


def test_episodes_name_each_query_box_from_examples_of_the_other_half():
    images = [embedded(kind, True, seed) for seed, kind in enumerate(["open", "short"] * 6)]
    images.append(embedded("open", False, 99))
    outcome = run_episodes(images, [1, ALL], episodes=4, seed=0)
    assert list(outcome) == ["1", "all"] and all(len(counts) == 4 for counts in outcome.values())
    for counts in outcome["1"]:
        assert sum(counts.truth.values()) == 6  # half of the 12 defective images
        figures = counts.figures()
        assert figures["box_recall"] == 1.0 and figures["false_boxes_per_good_image"] == 1.0
        assert figures["recall"] + figures["unknown_rate"] == pytest.approx(1.0)


def test_a_classifier_trained_per_episode_names_the_boxes_from_their_crops():
    images = [embedded(kind, True, seed) for seed, kind in enumerate(["open", "short"] * 6)]
    for image in images:  # one embedding for both types: only the crops tell them apart
        image.truth_embeddings = image.box_embeddings = np.eye(4, dtype=np.float32)[:1]
    by_similarity = run_episodes(images, [2], episodes=2, seed=0)
    by_classifier = run_episodes(
        images, [2], episodes=2, seed=0, classifier=CropClassifier(steps=10)
    )
    assert all(c.figures()["recall"] < 1.0 for c in by_similarity["2"])  # all called open
    assert [c.figures()["recall"] for c in by_classifier["2"]] == [1.0, 1.0]


def test_examples_are_drawn_per_type_up_to_the_shots_asked():
    pool = [embedded(kind, True, seed) for seed, kind in enumerate(["open"] * 3 + ["short"])]
    rng = np.random.default_rng(0)
    assert {k: len(v) for k, v in draw_examples(pool, 2, rng).items()} == {"open": 2, "short": 1}
    assert {k: len(v) for k, v in draw_examples(pool, ALL, rng).items()} == {"open": 3, "short": 1}


def test_mask_components_are_the_truth_boxes_of_the_image_type(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9] = 255
    mask[10:18, 20:22] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    sample = Sample(tmp_path / "i.png", 1, "crack", mask_path=tmp_path / "m.png")
    truth, regions = truth_regions(sample, (20, 30))
    assert truth == [((3, 2, 9, 5), "crack"), ((20, 10, 22, 18), "crack")]
    assert [region.sum() for region in regions] == [18, 16]
    typed = Sample(
        tmp_path / "i.png", 1, "open", boxes=((0, 0, 4, 4), (5, 5, 9, 9)), box_types=("spur", None)
    )
    assert truth_regions(typed, (20, 30))[0] == [((0, 0, 4, 4), "spur"), ((5, 5, 9, 9), "open")]


def test_evaluate_types_boxes_writes_every_figure_per_shots(tmp_path, capsys):
    data = write_category(tmp_path / "category")
    output = tmp_path / "report"
    command = ["evaluate-types", str(data), "--boxes", "--shots", "1", "all", "--episodes", "2"]
    command += ["--good", "4", "--method", "anomalydino", "--resolution", "64"]
    command += ["--param", "rotation=false", "-o", str(output)]
    assert main(command) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert list(metrics["results"]) == ["1", "all"] and metrics["seeds"] == [0]
    overall = metrics["results"]["all"]["overall"]
    assert set(overall) == set(OVERALL) and overall["false_boxes_per_good_image"] is not None
    assert set(metrics["results"]["1"]["by_type"]) == {"checkerboard", "scratch", "spot"}
    report = (output / "report.md").read_text()
    assert "| examples per type | typed precision |" in report and "## all examples" in report
    assert report in capsys.readouterr().out


def test_evaluate_types_boxes_can_name_by_a_classifier_trained_per_episode(tmp_path, capsys):
    data = write_category(tmp_path / "category")
    output = tmp_path / "report"
    command = ["evaluate-types", str(data), "--boxes", "--shots", "2", "--episodes", "1"]
    command += ["--good", "4", "--method", "anomalydino", "--resolution", "64"]
    command += ["--param", "rotation=false", "--classifier", "augmented", "-o", str(output)]
    assert main(command) == 0
    assert json.loads((output / "metrics.json").read_text())["classifier"] == "augmented"
    assert "types named by a CNN (augmented)" in capsys.readouterr().out


def test_several_shots_need_boxes(tmp_path, capsys):
    data = write_category(tmp_path / "category")
    assert main(["evaluate-types", str(data), "--shots", "1", "5", "-o", str(tmp_path)]) == 1
    assert "need --boxes" in capsys.readouterr().err

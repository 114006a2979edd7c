"""Box IoU and the one-to-one greedy matching behind box recall and precision."""

import numpy as np
import pytest

from anomalens.metrics import MATCH_IOU, iou_matrix, match_boxes

TRUTH = (0, 0, 100, 1)
"""A 100 × 1 px box: a prediction (0, 0, w, 1) inside it has IoU w / 100 exactly."""


def test_iou_of_identical_disjoint_and_edge_touching_boxes():
    overlaps = iou_matrix([(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30), (10, 0, 20, 10)])
    assert overlaps.tolist() == [[1.0, 0.0, 0.0]]  # x1 is exclusive: touching boxes share no pixel


def test_iou_is_intersection_over_union():
    assert iou_matrix([(0, 0, 10, 10)], [(5, 0, 15, 10)])[0, 0] == pytest.approx(50 / 150)


def test_iou_matrix_has_one_row_per_truth_box_and_one_column_per_prediction():
    assert iou_matrix([(0, 0, 1, 1)] * 2, [(0, 0, 1, 1)] * 3).shape == (2, 3)
    assert iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)
    assert iou_matrix([(0, 0, 0, 0)], [(0, 0, 0, 0)])[0, 0] == 0.0  # no area, no overlap


def test_iou_at_exactly_the_threshold_does_not_match_and_just_above_does():
    assert MATCH_IOU == 0.33
    assert iou_matrix([TRUTH], [(0, 0, 33, 1)])[0, 0] == 0.33
    assert match_boxes([TRUTH], [(0, 0, 33, 1)], [1.0]) == []
    assert match_boxes([TRUTH], [(0, 0, 34, 1)], [1.0]) == [(0, 0)]


def test_a_duplicate_prediction_is_a_false_positive():
    pairs = match_boxes([TRUTH], [TRUTH, TRUTH], [0.5, 0.9])
    assert pairs == [(0, 1)]  # the stronger one matches; the other is left unmatched


def test_predictions_are_taken_strongest_first_even_when_a_weaker_one_overlaps_more():
    weak_exact, strong_partial = TRUTH, (0, 0, 50, 1)
    assert match_boxes([TRUTH], [weak_exact, strong_partial], [0.2, 0.8]) == [(0, 1)]


def test_each_prediction_takes_the_free_truth_box_it_overlaps_most():
    truth = [(0, 0, 10, 10), (8, 0, 18, 10)]
    predicted = [(7, 0, 17, 10), (1, 0, 11, 10)]
    # the first prediction overlaps the second truth box most; the other takes the first one
    assert sorted(match_boxes(truth, predicted, [0.9, 0.8])) == [(0, 1), (1, 0)]


def test_one_prediction_matches_at_most_one_truth_box():
    truth = [(0, 0, 10, 10), (0, 0, 10, 10)]
    assert match_boxes(truth, [(0, 0, 10, 10)], [1.0]) == [(0, 0)]


def test_no_boxes_means_no_matches_and_scores_must_fit_the_predictions():
    assert match_boxes([], [(0, 0, 1, 1)], [1.0]) == []
    assert match_boxes([TRUTH], [], []) == []
    with pytest.raises(ValueError, match="2 predicted boxes but 1 scores"):
        match_boxes([TRUTH], [TRUTH, TRUTH], np.ones(1))

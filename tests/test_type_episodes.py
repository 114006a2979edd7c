"""Few-shot episodes on hand-made embeddings: metrics, intervals, open set, bad input."""

import numpy as np
import pytest

from anomalens.defect_types import DefectTypeError
from anomalens.defect_types.episodes import Estimate, run_episodes


def clusters(sizes: dict[str, int], spread: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Unit embeddings scattered by `spread` around one axis per type."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for axis, (name, size) in enumerate(sizes.items()):
        centre = np.eye(8)[axis]
        rows.append(centre + spread * rng.standard_normal((size, 8)))
        labels += [name] * size
    embeddings = np.concatenate(rows)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), labels


def by_name(results):
    return {result.name: result for result in results}


def test_separate_types_are_always_named_right_by_every_classifier():
    embeddings, labels = clusters({"a": 8, "b": 9, "c": 10}, spread=0.05)
    results = by_name(run_episodes(embeddings, labels, shots=3, episodes=10))
    assert set(results) == {"prototype", "example", "both", "logistic regression"}
    for result in results.values():
        assert result.metrics["accuracy"].mean == 1.0
        assert result.metrics["macro_f1"].mean == 1.0
        assert np.trace(result.confusion) == np.sum(result.confusion) == 10 * (27 - 9)


def test_overlapping_types_score_below_separate_ones_with_an_interval_around_the_mean():
    embeddings, labels = clusters({"a": 20, "b": 20, "c": 20}, spread=0.6)
    accuracy = by_name(run_episodes(embeddings, labels, shots=2, episodes=30))["both"].metrics[
        "accuracy"
    ]
    assert 0.34 < accuracy.mean < 1.0
    assert accuracy.low < accuracy.mean < accuracy.high


def test_the_confusion_matrix_counts_true_types_in_rows():
    embeddings, labels = clusters({"a": 6, "b": 6}, spread=0.05)
    labels[0] = "b"  # an "a"-like region labelled "b" is predicted "a" whenever it is a query
    (result,) = [r for r in run_episodes(embeddings, labels, 2, 5) if r.name == "prototype"]
    assert result.confusion[1][0] > 0 and result.confusion[0][1] == 0


def test_open_set_episodes_measure_how_well_unknown_types_stand_out():
    embeddings, labels = clusters({"a": 8, "b": 8, "c": 8}, spread=0.05)
    results = by_name(run_episodes(embeddings, labels, shots=3, episodes=6, open_set=True))
    metrics = results["both"].metrics
    assert metrics["unknown_auroc"].mean == 1.0
    assert metrics["unknown_recall"].mean > 0.9
    assert "false_unknown_rate" in metrics
    assert "unknown_recall" not in results["logistic regression"].metrics


def test_the_same_seed_gives_the_same_episodes():
    embeddings, labels = clusters({"a": 10, "b": 10, "c": 10}, spread=0.7)
    first, second = (run_episodes(embeddings, labels, 2, 8, seed=3) for _ in range(2))
    assert [r.metrics for r in first] == [r.metrics for r in second]


def test_an_estimate_of_one_episode_has_no_width():
    assert Estimate.of([0.5]) == Estimate(0.5, 0.5, 0.5)


def test_a_type_with_too_few_regions_is_named():
    embeddings, labels = clusters({"a": 8, "b": 5}, spread=0.05)
    with pytest.raises(
        DefectTypeError, match=r"more than 5 regions of each type; too few: b \(5\)"
    ):
        run_episodes(embeddings, labels, shots=5)


def test_open_set_needs_three_types():
    embeddings, labels = clusters({"a": 8, "b": 8}, spread=0.05)
    with pytest.raises(DefectTypeError, match="at least 3 defect types"):
        run_episodes(embeddings, labels, shots=2, open_set=True)

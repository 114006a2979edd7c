"""Typed boxes scored as DeepPCB scores them: a predicted box is right when its IoU with a
still-unmatched ground-truth box of the same type exceeds 0.33 (greedy, strongest box first).

Boxes called "unknown" claim no type: they are no typed prediction (they cost no precision) and
the defect under them stays missed; their share is reported beside the typed figures.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from anomalens.defect_types.registry import UNKNOWN
from anomalens.evaluation.operating_point import fraction
from anomalens.metrics.boxes import Bounds, match_boxes

TypedTruth = list[tuple[Bounds, str]]
"""One image's ground-truth boxes with their types."""
TypedPrediction = list[tuple[Bounds, str, float]]
"""One image's predicted boxes with their type (or "unknown") and detection score."""


@dataclass
class TypedBoxCounts:
    """Counts over the query images of one episode, fed one image at a time.

    Attributes:
        truth: ground-truth boxes per type.
        hits: (detection score, whether it matched) of each typed predicted box, per type.
        found: ground-truth boxes matched by a box of any type (class-agnostic, unknown too).
        predicted: boxes on defective images, unknown ones included.
        unknown: of those, boxes called "unknown".
        found_unknown: class-agnostic matches made by a box called "unknown".
        good_images, good_boxes, good_unknown: good images, boxes on them (all false), and how
            many of those were called "unknown".
    """

    truth: Counter[str] = field(default_factory=Counter)
    hits: dict[str, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    found: int = 0
    predicted: int = 0
    unknown: int = 0
    found_unknown: int = 0
    good_images: int = 0
    good_boxes: int = 0
    good_unknown: int = 0

    def update(self, truth: TypedTruth | None, predicted: TypedPrediction) -> None:
        """Count one image: `truth` None for a good image."""
        if truth is None:
            self.good_images += 1
            self.good_boxes += len(predicted)
            self.good_unknown += sum(kind == UNKNOWN for _, kind, _ in predicted)
            return
        self.truth.update(kind for _, kind in truth)
        self.predicted += len(predicted)
        self.unknown += sum(kind == UNKNOWN for _, kind, _ in predicted)
        agnostic = match_boxes(
            [bounds for bounds, _ in truth],
            [bounds for bounds, _, _ in predicted],
            [score for _, _, score in predicted],
        )
        self.found += len(agnostic)
        self.found_unknown += sum(predicted[j][1] == UNKNOWN for _, j in agnostic)
        for kind in {kind for _, kind, _ in predicted if kind != UNKNOWN}:
            mine = [(bounds, score) for bounds, k, score in predicted if k == kind]
            theirs = [bounds for bounds, k in truth if k == kind]
            matched = {j for _, j in match_boxes(theirs, *zip(*mine, strict=True))}
            self.hits[kind] += [(score, j in matched) for j, (_, score) in enumerate(mine)]

    def by_type(self) -> dict[str, dict[str, float | None]]:
        """Precision, recall, F-score and AP of each ground-truth or predicted type."""
        types = sorted(set(self.truth) | set(self.hits))
        return {kind: _figures(self.hits.get(kind, []), self.truth[kind]) for kind in types}

    def figures(self) -> dict[str, float | None]:
        """Overall typed precision, recall and F-score (micro: all types' boxes pooled), mean AP
        over the ground-truth types, class-agnostic box recall, false boxes per good image and
        the "unknown" rates; None where a fraction has no denominator."""
        pooled = [hit for hits in self.hits.values() for hit in hits]
        overall = _figures(pooled, self.truth.total())
        aps = [figures["ap"] for kind, figures in self.by_type().items() if self.truth[kind]]
        return {
            "precision": overall["precision"],
            "recall": overall["recall"],
            "f_score": overall["f_score"],
            "mean_ap": float(np.mean(aps)) if aps else None,
            "box_recall": fraction(self.found, self.truth.total()),
            "false_boxes_per_good_image": fraction(self.good_boxes, self.good_images),
            "unknown_rate": fraction(self.unknown, self.predicted),
            "found_called_unknown": fraction(self.found_unknown, self.found),
            "good_boxes_called_unknown": fraction(self.good_unknown, self.good_boxes),
        }


def average_precision(hits: list[tuple[float, bool]], truth: int) -> float | None:
    """Area under the precision-recall curve of scored hits against `truth` boxes, precision
    made monotone (VOC's all-point interpolation); None without ground truth."""
    if truth == 0:
        return None
    if not hits:
        return 0.0
    order = sorted(hits, key=lambda hit: -hit[0])
    correct = np.cumsum([matched for _, matched in order])
    precision = correct / np.arange(1, len(order) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0], correct])) > 0
    return float(precision[steps].sum() / truth)


def _figures(hits: list[tuple[float, bool]], truth: int) -> dict[str, float | None]:
    """Precision, recall, F-score (0 when nothing right was predicted) and AP."""
    correct = sum(matched for _, matched in hits)
    precision, recall = fraction(correct, len(hits)), fraction(correct, truth)
    return {
        "precision": precision,
        "recall": recall,
        "f_score": None if recall is None else 2 * correct / (len(hits) + truth),  # 2PR/(P+R)
        "ap": average_precision(hits, truth),
    }

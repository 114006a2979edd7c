"""What a user sees at the fitted detector's own thresholds: its OK/NG verdicts and its boxes,
counted over a test set one prediction at a time."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from anomalens.data import Sample
from anomalens.metrics.boxes import match_boxes
from anomalens.results import Result

OPERATING_METRICS = [
    "false_alarm_rate",
    "recall",
    "box_recall",
    "box_precision",
    "false_boxes_per_good_image",
]
"""Figures at the detector's thresholds; box recall and precision are None without box ground
truth (boxes on good images are false on any dataset)."""


@dataclass
class OperatingPoint:
    """Counts of verdicts and boxes (never maps), fed one prediction at a time.

    Every predicted box counts, whatever the image's verdict: the user sees them all.

    Attributes:
        good_images: good test images seen.
        false_alarms: good test images flagged NG.
        defective: defective test images seen, per defect type.
        flagged: defective test images flagged NG, per defect type.
        box_images: defective images with box ground truth.
        truth_boxes: ground-truth boxes on them.
        matched_boxes: ground-truth boxes matched one-to-one by a predicted box (`match_boxes`).
        boxes_on_defective: predicted boxes on the defective images with box ground truth.
        boxes_on_good: predicted boxes on good images, all of them false.
    """

    good_images: int = 0
    false_alarms: int = 0
    defective: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    box_images: int = 0
    truth_boxes: int = 0
    matched_boxes: int = 0
    boxes_on_defective: int = 0
    boxes_on_good: int = 0

    def update(self, sample: Sample, result: Result) -> None:
        """Count one test sample's prediction."""
        if sample.label == 0:
            self.good_images += 1
            self.false_alarms += bool(result.is_anomalous)
            self.boxes_on_good += len(result.boxes)
            return
        self.defective[sample.defect_type] += 1
        self.flagged[sample.defect_type] += bool(result.is_anomalous)
        if sample.boxes is None:
            return
        predicted = [(box.x0, box.y0, box.x1, box.y1) for box in result.boxes]
        scores = [box.score for box in result.boxes]
        self.box_images += 1
        self.truth_boxes += len(sample.boxes)
        self.matched_boxes += len(match_boxes(sample.boxes, predicted, scores))
        self.boxes_on_defective += len(predicted)

    def figures(self) -> dict[str, float | None]:
        """The OPERATING_METRICS; a fraction without a denominator is None, and so are box
        recall and precision when no image had box ground truth."""
        boxes = {
            "box_recall": fraction(self.matched_boxes, self.truth_boxes),
            "box_precision": fraction(self.matched_boxes, self.boxes_on_defective),
        }
        return {
            "false_alarm_rate": fraction(self.false_alarms, self.good_images),
            "recall": fraction(self.flagged.total(), self.defective.total()),
            **(boxes if self.box_images else dict.fromkeys(boxes)),
            "false_boxes_per_good_image": fraction(self.boxes_on_good, self.good_images),
        }

    def recall_by_type(self) -> dict[str, float]:
        """Recall per defect type, in the order the types were first seen."""
        return {name: self.flagged[name] / count for name, count in self.defective.items()}

    def to_dict(self) -> dict[str, Any]:
        """The counts for metrics.json (schema in docs/evaluation.md)."""
        recall = self.recall_by_type()
        boxes = {
            "images": self.box_images,
            "truth": self.truth_boxes,
            "matched": self.matched_boxes,
            "predicted_on_defective": self.boxes_on_defective,
        }
        return {
            "good_images": self.good_images,
            "false_alarms": self.false_alarms,
            "defective_images": self.defective.total(),
            "flagged_defective": self.flagged.total(),
            "boxes_on_good_images": self.boxes_on_good,
            "by_defect_type": {
                name: {"images": count, "flagged": self.flagged[name], "recall": recall[name]}
                for name, count in self.defective.items()
            },
            "boxes": boxes if self.box_images else None,
        }


def fraction(part: int, whole: int) -> float | None:
    """`part / whole`, None when `whole` is 0."""
    return part / whole if whole else None

"""Engines that inspect in this process: a fitted model batch by batch, or one zero-shot batch.

An engine's `outcomes(items)` yields one `Outcome` per item, in the order they complete; the
output folder writes them (`batch.folder`), whichever engine produced them.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from anomalens.batch.outcomes import Outcome, failure, inspect, render
from anomalens.batch.sources import Item, read_image
from anomalens.detector import Detector
from anomalens.errors import AnomalensError

BATCH = 8
"""Images read and predicted at a time."""


class LocalEngine:
    """A fitted detector inspecting `BATCH` images at a time."""

    def __init__(self, detector: Detector, batch_size: int = BATCH):
        self.detector = detector
        self.batch_size = batch_size

    def outcomes(self, items: Sequence[Item]) -> Iterator[Outcome]:
        for start in range(0, len(items), self.batch_size):
            yield from inspect(self.detector, items[start : start + self.batch_size])


class ZeroShotEngine:
    """Every readable image of `batch` scored against the others (`Detector.predict_batch`
    with zero_shot), whichever of them are still to be written: a batch's scores and thresholds
    depend on all its images, so a resumed run scores the whole batch again.

    Args:
        detector: an unfitted detector whose method gives the features; with `refit` it is
            fitted on the batch's confidently good images (see `predict_batch`).
        batch: every item of the batch.
        refit: references to refit on (0: none).
    """

    def __init__(self, detector: Detector, batch: Sequence[Item], refit: int = 0):
        self.detector = detector
        self.batch = list(batch)
        self.refit = refit

    def outcomes(self, items: Sequence[Item]) -> Iterator[Outcome]:
        wanted = {item.source for item in items}
        loaded, failed = [], []
        for item in self.batch:
            try:
                loaded.append((item, read_image(item.source)))
            except AnomalensError as error:
                failed.append(failure(item, error))
        yield from (outcome for outcome in failed if outcome.record["path"] in wanted)
        images = [image for _, image in loaded]
        results = self.detector.predict_batch(
            images, zero_shot=True, refit=self.refit, progress=True
        )
        threshold = self.detector.batch_thresholds["pixel"].value
        names = self.detector.defect_types.names
        for (item, image), result in zip(loaded, results, strict=True):
            if item.source in wanted:
                yield render(item, image, result, threshold, names)

    def summary(self) -> dict[str, Any]:
        """What results.json says about the zero-shot detector, after `outcomes` ran."""
        return {
            "zero_shot": {"refit": self.refit},
            **self.detector.config(),
            "thresholds": {k: t.to_dict() for k, t in self.detector.batch_thresholds.items()},
        }

"""Pixel-level AUROC, average precision, F1-max and AUPRO over a whole data set, streamed."""

from collections.abc import Iterable

import numpy as np

from anomalens.metrics.aupro import pro_auc, region_weights
from anomalens.metrics.curves import average_precision, best_f1, roc_auc
from anomalens.metrics.histogram import ScoreHistogram
from anomalens.metrics.inputs import map_and_mask, require_both_classes


class PixelMetrics:
    """Accumulates full-resolution anomaly maps and ground truth one image at a time.

    Memory stays at 3 × `bins` float64 whatever the number of images: pixel scores are counted
    in equal bins spanning every score seen (see `ScoreHistogram`: bin width below
    2·(max − min)/(bins − 1)). Scores sharing a bin act as ties, so the curves keep exactly the
    operating points whose threshold is a bin edge. The results are therefore exact when no bin
    holds two distinct scores; otherwise, with s the largest share of normal pixels in one bin,
    AUROC moves by at most s/2 and AUPRO by at most s/`fpr_limit` (each bin's part of the curve
    becomes its chord), and AP and F1-max by at most the change of precision inside one bin.

    Args:
        bins: number of score bins.
        fpr_limit: false-positive rate up to which AUPRO integrates, in (0, 1].
    """

    def __init__(self, bins: int = 2**20, fpr_limit: float = 0.3):
        if not 0 < fpr_limit <= 1:
            raise ValueError(f"the FPR limit must be in (0, 1], got {fpr_limit}")
        self.fpr_limit = fpr_limit
        self._histogram = ScoreHistogram(channels=3, bins=bins)  # normal, anomalous, overlap
        self._regions = 0

    def update(self, anomaly_map: np.ndarray, gt_mask: np.ndarray | None = None) -> None:
        """Add one image.

        Args:
            anomaly_map: (H, W) float per-pixel anomaly scores at the image's full resolution.
            gt_mask: (H, W) ground truth, nonzero where anomalous; None for a normal image.
        """
        scores, mask = map_and_mask(anomaly_map, gt_mask)
        overlap, regions = region_weights(mask)
        self._regions += regions
        self._histogram.add(scores.ravel(), [~mask.ravel(), mask.ravel(), overlap.ravel()])

    @property
    def regions(self) -> int:
        """Connected anomalous regions in the ground truth added so far (0: no anomalous pixel)."""
        return self._regions

    def compute(self) -> dict[str, float]:
        """pixel_auroc, pixel_ap, pixel_f1_max and aupro over all images added so far."""
        _, (normal, anomalous, overlap) = self._histogram.descending()
        require_both_classes(anomalous.sum(), normal.sum(), "pixels")
        return {
            "pixel_auroc": roc_auc(anomalous, normal),
            "pixel_ap": average_precision(anomalous, normal),
            "pixel_f1_max": best_f1(anomalous, normal)[0],
            "aupro": pro_auc(normal, overlap / self._regions, self.fpr_limit),
        }


def pixel_metrics(
    maps: Iterable[np.ndarray],
    masks: Iterable[np.ndarray | None],
    bins: int = 2**20,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """`PixelMetrics.compute()` over paired anomaly maps and ground-truth masks (None = normal),
    consumed one pair at a time; `bins` and `fpr_limit` as in `PixelMetrics`."""
    metrics = PixelMetrics(bins=bins, fpr_limit=fpr_limit)
    for anomaly_map, gt_mask in zip(maps, masks, strict=True):
        metrics.update(anomaly_map, gt_mask)
    return metrics.compute()

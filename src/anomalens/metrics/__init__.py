"""Evaluation metrics: image-level AUROC/AP/F1-max; streamed pixel-level AUROC/AP/F1-max/AUPRO."""

from anomalens.metrics.image import f1_max, image_ap, image_auroc
from anomalens.metrics.inputs import MetricInputError
from anomalens.metrics.pixel import PixelMetrics, pixel_metrics

__all__ = [
    "MetricInputError",
    "PixelMetrics",
    "f1_max",
    "image_ap",
    "image_auroc",
    "pixel_metrics",
]

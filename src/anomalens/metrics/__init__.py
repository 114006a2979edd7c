"""Evaluation metrics: image-level AUROC/AP/F1-max; streamed pixel-level AUROC/AP/F1-max/AUPRO;
box IoU and matching."""

from anomalens.metrics.boxes import MATCH_IOU, Bounds, iou_matrix, match_boxes
from anomalens.metrics.image import f1_max, image_ap, image_auroc
from anomalens.metrics.inputs import MetricInputError
from anomalens.metrics.pixel import PixelMetrics, pixel_metrics

__all__ = [
    "MATCH_IOU",
    "Bounds",
    "MetricInputError",
    "PixelMetrics",
    "f1_max",
    "image_ap",
    "image_auroc",
    "iou_matrix",
    "match_boxes",
    "pixel_metrics",
]

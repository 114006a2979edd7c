"""Files a prediction can be exported to: COCO detections and a self-contained HTML report."""

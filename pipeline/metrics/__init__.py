"""Official HICO (classification) and HICO-DET (detection) evaluation protocols, in NumPy.

All scores here are fractions in [0, 1]; reports and DVC metrics show them in percent.
"""
from pipeline.metrics.ap import average_precision_11pt, precision_recall
from pipeline.metrics.classification import ClassificationResult, hico_classification_map, subset_map
from pipeline.metrics.detection import DetectionResult, box_iou, hicodet_map

__all__ = ["average_precision_11pt", "precision_recall", "ClassificationResult",
           "hico_classification_map", "subset_map", "DetectionResult", "box_iou", "hicodet_map"]

"""Official HICO (classification) and HICO-DET (detection) evaluation protocols, and the single-label mAP of
MPII, in NumPy, for any label space (class counts and objects are arguments, never HICO defaults).

All scores here are fractions in [0, 1]; reports and DVC metrics show them in percent.
"""
from pipeline.metrics.ap import average_precision_11pt, precision_recall
from pipeline.metrics.classification import (ClassificationResult, hico_classification_map, seen_unseen_map,
                                             subset_map)
from pipeline.metrics.hoi_detection import DetectionResult, box_iou, hicodet_map
from pipeline.metrics.single_label import SingleLabelResult, single_label_map

__all__ = ["average_precision_11pt", "precision_recall", "ClassificationResult",
           "hico_classification_map", "seen_unseen_map", "subset_map", "DetectionResult", "box_iou", "hicodet_map",
           "SingleLabelResult", "single_label_map"]

"""Single-label classification mAP (MPII activities: one class per image), in the two published conventions.

Both rank the images of each class by the softmax over all classes of the image's logits (the softmax
changes how one class ranks across images, so it matters) and differ in the AP and the mean:

- DEFR authors' code: 11-point interpolated AP per class (``pipeline.metrics.ap``), mean over *all* C
  classes, a class without a positive counting 0 (``map_all_classes``);
- Girdhar et al.'s code (Attentional Pooling, whose split MPII papers share): all-points AP (the area under
  the precision envelope, VOC 2010+), mean over the classes with a positive (``map_with_positive``).

Which one the DEFR paper's Table 4 used is not published. Ties are ranked in image order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.metrics.ap import ap_from_curve


@dataclass(frozen=True)
class SingleLabelResult:
    """Fractions in [0, 1].

    Attributes:
        map_all_classes: mean of ``per_class_11pt`` over all classes, 0 for a class without a positive.
        map_with_positive: mean of ``per_class_all_points`` over the classes with a positive.
        accuracy: share of images whose highest score is their class.
        per_class_11pt, per_class_all_points: [C] AP; NaN where the class has no positive.
        num_classes, num_with_positive: C and the classes with at least one positive.
    """

    map_all_classes: float
    map_with_positive: float
    accuracy: float
    per_class_11pt: np.ndarray
    per_class_all_points: np.ndarray
    num_classes: int
    num_with_positive: int


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, C] logits (shifted by the row maximum: finite for any magnitude)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def all_points_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ ``voc_ap``): sum over recall steps of the highest
    precision at that recall or beyond."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def single_label_map(logits, labels, num_classes: int | None = None) -> SingleLabelResult:
    """Both conventions of single-label mAP (see the module docstring).

    Args:
        logits: [N, C] finite scores (softmax is applied here).
        labels: [N] class id of each image.
        num_classes: C (defaults to the logits' width, which must equal it).

    Raises:
        ValueError: shape mismatch, non-finite scores, a label outside [0, C).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    C = logits.shape[1] if logits.ndim == 2 else -1
    if logits.ndim != 2 or logits.shape[0] != len(labels) or (num_classes is not None and C != num_classes):
        raise ValueError(f"logits {logits.shape} and labels ({len(labels)},) must be [N, C] and [N]"
                         + (f" with C = {num_classes}" if num_classes is not None else ""))
    if not np.isfinite(logits).all():
        r, c = np.argwhere(~np.isfinite(logits))[0]
        raise ValueError(f"score of image row {r}, class {c} is {logits[r, c]}; scores must be finite")
    bad = (labels < 0) | (labels >= C)
    if bad.any():
        raise ValueError(f"label of image row {int(np.argmax(bad))} is {labels[bad][0]}; expected [0, {C})")
    probs = softmax(logits) if len(labels) else logits
    ap11, apall = np.full(C, np.nan), np.full(C, np.nan)
    for c in np.unique(labels):
        order = np.argsort(-probs[:, c], kind="stable")
        hit = labels[order] == c
        tp = np.cumsum(hit)
        recall = tp / tp[-1]
        precision = tp / np.arange(1, len(tp) + 1)
        ap11[c] = float(ap_from_curve(recall, precision))
        apall[c] = all_points_ap(recall, precision)
    with_positive = ~np.isnan(ap11)
    accuracy = float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else float("nan")
    return SingleLabelResult(float(np.nan_to_num(ap11, nan=0.0).mean()),
                             float(apall[with_positive].mean()) if with_positive.any() else float("nan"),
                             accuracy, ap11, apall, C, int(with_positive.sum()))

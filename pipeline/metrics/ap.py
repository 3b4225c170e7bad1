"""The 11-point interpolated average precision of the official HICO / HICO-DET Matlab code.

AP = mean over t in {0, 0.1, ..., 1} of the highest precision at any rank whose recall is >= t
(0 where recall never reaches t), as in VOC2007 ``VOCevaldet`` / ho-rcnn ``eval_one.m``.
"""
from __future__ import annotations

import numpy as np

# The doubles of Matlab's ``for t = 0:0.1:1``: its colon operator builds the first half of the range as
# k * 0.1 and the second half as 1 - (10 - k) * 0.1, so t(4) is 0.30000000000000004 (a recall of exactly
# 3/10 does not reach it) while 0.6 and 0.7 are the plain doubles (NumPy's arange gives 0.6000000000000001
# and 0.7000000000000001). Only a recall landing exactly on a threshold can tell them apart.
RECALL_THRESHOLDS = np.array([k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11)])


def precision_recall(scores, labels, num_positives: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each rank of a ranking sorted by descending score.

    Args:
        scores: [K] finite scores.
        labels: [K] truthy = true positive, falsy = false positive.
        num_positives: the recall denominator (all ground-truth positives, found or not); defaults to
            the number of true labels.

    Returns:
        (recall, precision), each [K] float64, in rank order (ties keep input order, like Matlab's
        stable ``sort(..., 'descend')``).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores has {scores.size} entries but labels has {labels.size}")
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"score {bad} is {scores[bad]}; scores must be finite")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    fp = np.cumsum(~labels[order])
    npos = int(labels.sum()) if num_positives is None else int(num_positives)
    if npos < tp[-1:].sum():
        raise ValueError(f"num_positives={npos} is below the {int(tp[-1])} true positives in the ranking")
    recall = tp / npos if npos > 0 else np.zeros(tp.shape)
    precision = tp / np.maximum(tp + fp, 1)
    return recall, precision


def ap_from_curve(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """11-point AP along axis 0 of [K, ...] recall / precision arrays (recall non-decreasing on axis 0)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape[0] == 0:
        return np.zeros(recall.shape[1:])
    # Highest precision at rank >= k: the max over recall >= t is this suffix max at the first rank
    # whose recall reaches t, because recall never decreases along a ranking.
    best_after = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    total = np.zeros(recall.shape[1:])
    for t in RECALL_THRESHOLDS:
        reached = recall >= t
        first = np.argmax(reached, axis=0)
        hit = reached.any(axis=0)
        total = total + np.where(hit, np.take_along_axis(best_after, first[None, ...], axis=0)[0], 0.0)
    return total / len(RECALL_THRESHOLDS)


def average_precision_11pt(scores, labels, num_positives: int | None = None) -> float:
    """The official 11-point interpolated AP, a fraction in [0, 1].

    Args:
        scores: [K] finite scores of the ranked items (detections or images).
        labels: [K] truthy where the item is a true positive.
        num_positives: the number of ground-truth positives (defaults to the true labels' count; for
            detection pass every ground-truth pair of the class, so missed pairs lower the recall).

    Returns:
        AP as a fraction; 0.0 when there is nothing ranked or no positive.
    """
    recall, precision = precision_recall(scores, labels, num_positives)
    if recall.size == 0:
        return 0.0
    return float(ap_from_curve(recall, precision))

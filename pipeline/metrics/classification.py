"""Multi-label image classification mAP with the official HICO protocol (``anno.mat``), for any label space.

Per class, every test image is ranked by score except the ambiguous ones (label 0), which are removed;
unknown labels (NaN) count as negatives; AP is 11-point interpolated (``pipeline.metrics.ap``).
Known-object setting: images where the class's object is not annotated are ranked last.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.datasets.labels import object_present
from pipeline.metrics.ap import ap_from_curve


@dataclass(frozen=True)
class ClassificationResult:
    """mAP and per-class AP, as fractions in [0, 1] (multiply by 100 for reports).

    Attributes:
        map: nanmean of ``per_class`` over the classes that have at least one positive.
        per_class: [C] AP; NaN where the class has no positive among the ranked images.
        num_evaluated: how many classes entered the mean.
        known_object: whether the known-object setting was used.
    """

    map: float
    per_class: np.ndarray
    num_evaluated: int
    known_object: bool


def hico_classification_map(scores, labels, known_object: bool = False,
                            hoi_object: np.ndarray | None = None) -> ClassificationResult:
    """HICO classification mAP (fraction in [0, 1]) with the official rule.

    Args:
        scores: [N, C] finite scores, one row per test image.
        labels: [N, C] HICO coding: +1 positive, -1 negative, 0 ambiguous (removed), NaN unknown
            (negative); from ``pipeline.datasets.labels.label_matrix``.
        known_object: rank images whose object is not annotated last (for a class, an image "has the
            object" when any HOI of that object has a known label: ``object_present``). Since such
            images carry no positive, this equals dropping them from the ranking.
        hoi_object: [C] object index of each class (required with ``known_object``).

    Returns:
        A ``ClassificationResult``.

    Raises:
        ValueError: on shape mismatch, non-finite scores, or labels outside {1, -1, 0, NaN}.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, C]")
    if not np.isfinite(scores).all():
        r, c = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"score of image row {r}, class {c} is {scores[r, c]}; scores must be finite")
    known = ~np.isnan(labels)
    odd = known & ~np.isin(labels, (1.0, -1.0, 0.0))
    if odd.any():
        r, c = np.argwhere(odd)[0]
        raise ValueError(f"label of image row {r}, class {c} is {labels[r, c]}; expected 1, -1, 0 or NaN")
    positive = labels == 1.0
    counted = labels != 0.0          # NaN != 0 is True: unknown labels stay in the ranking as negatives
    if known_object:
        if hoi_object is None:
            raise ValueError("known_object needs hoi_object, the object index of each class")
        hoi_object = np.asarray(hoi_object)
        if hoi_object.shape != (labels.shape[1],):
            raise ValueError(f"hoi_object has shape {hoi_object.shape}, expected ({labels.shape[1]},)")
        present = object_present(labels, hoi_object, int(hoi_object.max()) + 1)[:, hoi_object]
        # Ranked last = below every score of an image with the object.
        scores = np.where(present, scores, -np.inf)
    per_class = _per_class_ap(scores, positive, counted)
    evaluated = ~np.isnan(per_class)
    mean = float(per_class[evaluated].mean()) if evaluated.any() else float("nan")
    return ClassificationResult(mean, per_class, int(evaluated.sum()), known_object)


def _per_class_ap(scores: np.ndarray, positive: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """[C] AP; items not ``counted`` neither add a true nor a false positive (= removed)."""
    order = np.argsort(-scores, axis=0, kind="stable")
    pos = np.take_along_axis(positive, order, axis=0)
    cnt = np.take_along_axis(counted, order, axis=0)
    tp = np.cumsum(pos & cnt, axis=0)
    fp = np.cumsum(~pos & cnt, axis=0)
    npos = tp[-1] if tp.shape[0] else np.zeros(scores.shape[1])
    recall = tp / np.maximum(npos, 1)
    precision = tp / np.maximum(tp + fp, 1)
    ap = ap_from_curve(recall, precision)
    return np.where(npos > 0, ap, np.nan)


def subset_map(per_class: np.ndarray, hois) -> tuple[float, int]:
    """(nanmean of ``per_class`` over ``hois``, number of those classes with an AP)."""
    values = np.asarray(per_class, dtype=np.float64)[np.asarray(hois, dtype=np.int64)]
    values = values[~np.isnan(values)]
    return (float(values.mean()) if values.size else float("nan")), int(values.size)


def seen_unseen_map(per_class: np.ndarray, unseen) -> dict[str, tuple[float, int]]:
    """Full / Seen / Unseen of a zero-shot setting: ``{"full" | "seen" | "unseen": (mean AP, classes)}``,
    each the mean of ``per_class`` over all classes, the seen ones and the unseen ones ([C] bool ``unseen``),
    leaving out classes without an AP (NaN: no test positive), as :func:`subset_map` does."""
    unseen = np.asarray(unseen, dtype=bool)
    if unseen.shape != np.shape(per_class):
        raise ValueError(f"unseen mask has shape {unseen.shape}, per-class AP {np.shape(per_class)}")
    return {name: subset_map(per_class, np.flatnonzero(mask))
            for name, mask in (("full", np.ones_like(unseen)), ("seen", ~unseen), ("unseen", unseen))}

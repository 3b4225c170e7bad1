"""Detections of one image -> human-object box pairs (the candidate regions of DEFR's detection step).

Follows the authors' release (and UPT, whose post-processing it reuses): keep boxes with score >=
``score_threshold``, class-wise NMS at IoU ``nms_threshold``, at most ``max_humans`` person boxes and
``max_objects`` non-person boxes (highest scores first); a pair is every kept human x every other kept
box, so a person can be the object (HICO has "hug person", "kiss person", ...).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import batched_nms

from pipeline.detection.boxes import CLIPPED, box_problems

PERSON = 0  # COCO-80 contiguous label of "person"


@dataclass(frozen=True)
class PairParams:
    """Pair generation knobs (params.yaml ``score_regions``)."""

    score_threshold: float = 0.2
    nms_threshold: float = 0.5
    max_humans: int = 15
    max_objects: int = 15


@dataclass
class Pairs:
    """The pairs of one image; boxes in original pixels (clipped to the image)."""

    human_box: np.ndarray          # [P, 4] float32
    object_box: np.ndarray         # [P, 4] float32
    human_score: np.ndarray        # [P] float32
    object_score: np.ndarray       # [P] float32
    object_label: np.ndarray       # [P] int64, COCO-80
    rejected: Counter = field(default_factory=Counter)   # reason -> number of boxes dropped

    def __len__(self) -> int:
        return len(self.human_box)


def clean_boxes(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Clips boxes to the image; drops non-finite, degenerate and out-of-image ones
    (:func:`pipeline.detection.boxes.box_problems`, the detect stage's own rules).

    Returns:
        (clipped boxes [M, 4] float32, kept indices [M], Counter of reasons, with ``clipped to the image
        (kept)`` for boxes that were clipped and kept).
    """
    clipped, reasons, changed = box_problems(boxes, width, height)
    rejected = Counter(r for r in reasons if r is not None)
    if changed.any():
        rejected[CLIPPED] = int(changed.sum())
    keep = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
    return clipped[keep].reshape(-1, 4), keep, rejected


def _top(idx: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    return idx[np.argsort(-scores[idx], kind="stable")[:k]]


def make_pairs(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, width: float, height: float,
               params: PairParams = PairParams(), image_id: int | str = "?") -> Pairs:
    """Human-object pairs of one image.

    Args:
        boxes: [M, 4] detections ``x1, y1, x2, y2`` in original pixels.
        labels: [M] COCO-80 contiguous labels (person = 0).
        scores: [M] detection scores in [0, 1].
        width, height: the original image size.
        params: thresholds and caps.
        image_id: named in errors.

    Returns:
        :class:`Pairs` (possibly empty), with counts of the boxes dropped as invalid.

    Raises:
        ValueError: NaN/inf scores, scores outside [0, 1], or mismatched lengths.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"detections of image {image_id}: {len(boxes)} boxes, {len(labels)} labels, "
                         f"{len(scores)} scores; expected equal lengths")
    bad = np.flatnonzero(~np.isfinite(scores) | (scores < 0) | (scores > 1))
    if len(bad):
        raise ValueError(f"detections of image {image_id}: score {scores[bad[0]]} at detection "
                         f"{bad[0]} (and {len(bad) - 1} more); expected finite scores in [0, 1]")
    if not (width > 0 and height > 0):
        raise ValueError(f"image {image_id}: size {width}x{height}; expected positive width and height")
    clipped, keep, rejected = clean_boxes(boxes, width, height)
    labels, scores = labels[keep], scores[keep]
    ok = np.flatnonzero(scores >= params.score_threshold)
    if len(ok):
        nms = batched_nms(torch.from_numpy(clipped[ok]).double(), torch.from_numpy(scores[ok]),
                          torch.from_numpy(labels[ok]), params.nms_threshold).numpy()
        ok = ok[nms]
    humans = _top(ok[labels[ok] == PERSON], scores, params.max_humans)
    objects = _top(ok[labels[ok] != PERSON], scores, params.max_objects)
    instances = np.concatenate([humans, objects])
    h, o = np.meshgrid(humans, instances, indexing="ij")
    h, o = h.ravel(), o.ravel()
    distinct = h != o
    h, o = h[distinct], o[distinct]
    return Pairs(human_box=clipped[h].reshape(-1, 4), object_box=clipped[o].reshape(-1, 4),
                 human_score=scores[h].astype(np.float32), object_score=scores[o].astype(np.float32),
                 object_label=labels[o], rejected=rejected)

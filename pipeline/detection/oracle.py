"""DEMO ONLY: an "oracle detector" that perturbs the ground-truth boxes (it is not a detector).

No detector weights can be downloaded for the embedded demo, so its default box source takes the
annotated human and object boxes of pairs.parquet and degrades them like a detector would: coordinate
jitter, dropped boxes (misses), random false positives, and random scores (true boxes score higher on
average than false ones). Results depend only on the seed and the image id, not on the row order, so a
re-run or a subset gives the same boxes. Any metric computed on them measures the HOI scoring alone,
never detection quality: the stage labels its output ``oracle: demo only``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.detection.boxes import ImageDetections

LABEL = "demo only: perturbed ground-truth boxes (oracle), not a detector"


@dataclass(frozen=True)
class OracleConfig:
    """How the ground truth is degraded.

    Attributes:
        seed: base seed; each image uses ``(seed, image_id)``.
        jitter: std of the coordinate noise as a fraction of the box width / height.
        drop_rate: probability that a ground-truth box is missed.
        false_positives: mean number (Poisson) of random false boxes per image.
        true_score: [low, high] uniform score range of kept ground-truth boxes.
        false_score: [low, high] uniform score range of false positives.
    """
    seed: int = 0
    jitter: float = 0.05
    drop_rate: float = 0.1
    false_positives: float = 1.0
    true_score: tuple[float, float] = (0.5, 1.0)
    false_score: tuple[float, float] = (0.05, 0.6)

    def __post_init__(self):
        for name in ("jitter", "drop_rate", "false_positives"):
            if getattr(self, name) < 0:
                raise ValueError(f"detect.oracle.{name} must be >= 0, got {getattr(self, name)}")
        if self.drop_rate > 1:
            raise ValueError(f"detect.oracle.drop_rate must be <= 1, got {self.drop_rate}")
        for name in ("true_score", "false_score"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"detect.oracle.{name} must be [low, high] within [0, 1], got {[lo, hi]}")


def ground_truth(pairs: pa.Table, class_coco80: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Unique annotated boxes per image: {image_id: (boxes [N, 4], COCO-80 labels [N])}.

    A person or object that takes part in several pairs is annotated once per pair, so identical
    boxes with the same label are merged. ``class_coco80`` is the COCO-80 label of each class's object
    (``ClassSpace.coco80``; -1 where a class has none: its object boxes carry no detector label and are
    left out, the person boxes stay).
    """
    class_coco80 = np.asarray(class_coco80, dtype=np.int64)
    pairs = pairs.filter(pa.array(class_coco80[pairs["hoi"].to_numpy().astype(np.int64)] >= 0)) \
        if pairs.num_rows and (class_coco80 < 0).any() else pairs
    hoi_coco = class_coco80
    ids = pairs["image_id"].to_numpy()
    hoi = pairs["hoi"].to_numpy().astype(np.int64)
    human = np.asarray(pairs["human_box"].to_pylist(), dtype=np.float32).reshape(-1, 4)
    obj = np.asarray(pairs["object_box"].to_pylist(), dtype=np.float32).reshape(-1, 4)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    for rows in np.split(order, bounds) if len(order) else []:
        boxes = np.concatenate([human[rows], obj[rows]])
        labels = np.concatenate([np.zeros(len(rows), np.int64), hoi_coco[hoi[rows]]])
        key = np.concatenate([boxes, labels[:, None].astype(np.float32)], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        first = np.sort(first)
        out[int(ids[rows[0]])] = (boxes[first], labels[first])
    return out


def perturb(image_id: int, width: int, height: int, gt_boxes: np.ndarray, gt_labels: np.ndarray,
            cfg: OracleConfig) -> ImageDetections:
    """The oracle's detections for one image (deterministic in ``cfg.seed`` and ``image_id``)."""
    rng = np.random.default_rng([cfg.seed, int(image_id)])
    keep = rng.random(len(gt_boxes)) >= cfg.drop_rate
    boxes = gt_boxes[keep].astype(np.float64)
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    boxes = boxes + rng.normal(0.0, cfg.jitter, boxes.shape) * size
    scores = rng.uniform(*cfg.true_score, len(boxes))
    labels = gt_labels[keep]

    n_false = rng.poisson(cfg.false_positives)
    wh = rng.uniform(0.1, 0.6, (n_false, 2)) * [width, height]
    xy = rng.uniform(0, 1, (n_false, 2)) * ([width, height] - wh)
    false_boxes = np.concatenate([xy, xy + wh], axis=1)
    false_labels = np.where(rng.random(n_false) < 0.5, 0, rng.integers(1, 80, n_false))
    boxes = np.concatenate([boxes, false_boxes])
    labels = np.concatenate([labels, false_labels])
    scores = np.concatenate([scores, rng.uniform(*cfg.false_score, n_false)])
    # Keep the box ordered after jitter (x1 <= x2), as a detector would.
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                            np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    return ImageDetections(int(image_id), boxes.astype(np.float32), labels.astype(np.int64),
                           scores.astype(np.float32))


def oracle_detections(images: pa.Table, pairs: pa.Table, cfg: OracleConfig,
                      class_coco80: np.ndarray) -> list[ImageDetections]:
    """Oracle detections for every image of ``images`` (image_id, width, height).

    Images without annotated pairs get false positives only.
    """
    gt = ground_truth(pairs, class_coco80)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    out = []
    for image_id, w, h in zip(images["image_id"].to_pylist(), images["width"].to_pylist(),
                              images["height"].to_pylist()):
        out.append(perturb(image_id, w, h, *gt.get(int(image_id), empty), cfg))
    return out

"""The detections table: clipping to the image, score floor, per-image cap, schema conformance."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.schemas import DETECTIONS, REJECTS, conform


@dataclass
class ImageDetections:
    """Detections of one image in COCO-80 labels and original pixels (boxes [N, 4] xyxy)."""
    image_id: int
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


@dataclass
class Counts:
    """What the post-processing changed, reported in the artifact's metadata (nothing silently)."""
    clipped: int = 0          # boxes that reached outside the image and were clipped to it
    degenerate: int = 0       # boxes of zero area after clipping, dropped
    below_floor: int = 0      # boxes under the score floor, dropped
    over_cap: int = 0         # boxes beyond max_per_image (lowest scores), dropped
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"clipped": self.clipped, "degenerate_dropped": self.degenerate,
                "below_score_floor": self.below_floor, "over_max_per_image": self.over_cap,
                **self.extra}


def finish(det: ImageDetections, width: int, height: int, score_floor: float, max_per_image: int,
           counts: Counts) -> ImageDetections:
    """Clips boxes to [0, width] x [0, height], drops degenerate, low-score and surplus boxes.

    Boxes stay sorted by descending score. ``counts`` is updated in place.
    """
    boxes = np.asarray(det.boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(det.labels, dtype=np.int64).reshape(-1)
    limit = np.array([width, height, width, height], dtype=np.float32)
    clipped = np.clip(boxes, 0, limit)
    counts.clipped += int(np.any(clipped != boxes, axis=1).sum())
    ok = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    counts.degenerate += int((~ok).sum())
    high = scores >= score_floor
    counts.below_floor += int((ok & ~high).sum())
    keep = np.flatnonzero(ok & high)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if max_per_image and len(keep) > max_per_image:
        counts.over_cap += len(keep) - max_per_image
        keep = keep[:max_per_image]
    return ImageDetections(det.image_id, clipped[keep], labels[keep], scores[keep])


def to_table(dets: list[ImageDetections]) -> pa.Table:
    """Concatenates per-image detections into a :data:`DETECTIONS` table (validated)."""
    n = [len(d.scores) for d in dets]
    total = int(sum(n))
    image_id = np.repeat(np.array([d.image_id for d in dets], dtype=np.int64), n)
    boxes = (np.concatenate([d.boxes for d in dets]) if total else np.zeros((0, 4))).astype(np.float32)
    labels = (np.concatenate([d.labels for d in dets]) if total else np.zeros(0)).astype(np.int16)
    scores = (np.concatenate([d.scores for d in dets]) if total else np.zeros(0)).astype(np.float32)
    check(boxes, labels, scores, "detections")
    box = pa.FixedSizeListArray.from_arrays(pa.array(boxes.reshape(-1)), 4)
    table = pa.table({"image_id": image_id, "box": box.cast(pa.list_(pa.float32(), 4)),
                      "label": labels, "score": scores})
    return conform(table, DETECTIONS, "detections")


def check(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, name: str) -> None:
    """Raises ValueError naming ``name`` when labels, scores or boxes are out of their ranges."""
    if labels.size and (labels.min() < 0 or labels.max() > 79):
        raise ValueError(f"{name}: labels must be COCO-80 (0..79), got {labels.min()}..{labels.max()}")
    if scores.size and (not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"{name}: scores must be in [0, 1], got {scores.min()}..{scores.max()}")
    if boxes.size and not np.isfinite(boxes).all():
        raise ValueError(f"{name}: boxes contain NaN or inf")


def rejects_table(rows: list[tuple[str, str, str]]) -> pa.Table:
    """(source, item, reason) rows -> a :data:`REJECTS` table."""
    cols = list(zip(*rows)) if rows else [[], [], []]
    table = pa.table({"source": pa.array(cols[0], pa.string()), "item": pa.array(cols[1], pa.string()),
                      "reason": pa.array(cols[2], pa.string())})
    return conform(table, REJECTS, "rejects")

"""The detections table: clipping to the image, unusable boxes (rejects), score floor, per-image cap, schema."""
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


# Why a box is dropped. Each dropped box is a reject row (source, item, reason) of the detect stage's rejects
# table and counts against checks.max_reject_fraction. The score floor and the per-image cap are filters,
# not drops: they are what the params ask for, so they are counted in the metadata only.
NON_FINITE = "non-finite box"
DEGENERATE = "degenerate box (x2 <= x1 or y2 <= y1)"
LIKELY_XYWH = ("likely x, y, w, h box: x2 <= x1 or y2 <= y1, but read as x, y, w, h it fits the image "
               "(boxes must be x1, y1, x2, y2)")
OUTSIDE = "box outside the image"
CLIPPED = "clipped to the image (kept)"


@dataclass
class Counts:
    """What the post-processing changed, reported in the artifact's metadata (nothing silently)."""
    boxes: int = 0            # boxes seen (before anything was dropped or filtered)
    clipped: int = 0          # boxes that reached outside the image and were clipped to it (kept)
    below_floor: int = 0      # filter: boxes under the score floor
    over_cap: int = 0         # filter: boxes beyond max_per_image (lowest scores)
    rejects: list = field(default_factory=list)   # (source, item, reason) of every dropped box
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"boxes_in": self.boxes, "clipped": self.clipped, "boxes_rejected": len(self.rejects),
                "below_score_floor": self.below_floor, "over_max_per_image": self.over_cap, **self.extra}

    def add(self, other: "Counts") -> None:
        self.boxes += other.boxes
        self.clipped += other.clipped
        self.below_floor += other.below_floor
        self.over_cap += other.over_cap
        self.rejects += other.rejects


def box_problems(boxes: np.ndarray, width: float, height: float) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """Clips boxes to [0, width] x [0, height] and says which cannot be used, and why.

    Args:
        boxes: [N, 4] ``x1, y1, x2, y2`` in original pixels.
        width, height: the image size.

    Returns:
        (clipped boxes [N, 4] float32, reason per box (None: usable), [N] bool: usable and changed by clipping).
        Reasons: :data:`NON_FINITE`, :data:`DEGENERATE`, :data:`LIKELY_XYWH` (an inverted box that would fit
        the image read as x, y, w, h: a whole file of them means the wrong box format), :data:`OUTSIDE`.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    clipped = np.clip(safe, 0, [width, height, width, height])
    inverted = finite & ((safe[:, 2] <= safe[:, 0]) | (safe[:, 3] <= safe[:, 1]))
    strictly = (safe[:, 2] < safe[:, 0]) | (safe[:, 3] < safe[:, 1])   # a zero-width box is just degenerate
    as_xywh = (inverted & strictly & (safe[:, :2] >= 0).all(axis=1) & (safe[:, 2:] > 0).all(axis=1)
               & (safe[:, 0] + safe[:, 2] <= width) & (safe[:, 1] + safe[:, 3] <= height))
    empty = finite & ~inverted & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    reasons: list[str | None] = [None] * len(boxes)
    for mask, reason in ((~finite, NON_FINITE), (inverted & ~as_xywh, DEGENERATE), (as_xywh, LIKELY_XYWH),
                         (empty, OUTSIDE)):
        for i in np.flatnonzero(mask):
            reasons[i] = reason
    usable = finite & ~inverted & ~empty
    changed = usable & (np.abs(clipped - safe) > 0).any(axis=1)
    return clipped.astype(np.float32), reasons, changed


def box_item(image: str | int, box) -> str:
    """The rejects ``item`` of one box: its image and its coordinates as given."""
    return f"{image} box [{', '.join(f'{float(v):.1f}' for v in np.asarray(box).reshape(-1))}]"


def finish(det: ImageDetections, width: int, height: int, score_floor: float, max_per_image: int,
           counts: Counts, source: str = "", image: str | None = None) -> ImageDetections:
    """Clips boxes to the image, drops unusable boxes (reject rows), applies the score floor and the cap.

    Boxes stay sorted by descending score. ``counts`` is updated in place; every dropped box adds a
    ``(source, item, reason)`` row to ``counts.rejects`` (``item`` names ``image``, default the image id).
    """
    boxes = np.asarray(det.boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(det.labels, dtype=np.int64).reshape(-1)
    clipped, reasons, changed = box_problems(boxes, width, height)
    counts.boxes += len(boxes)
    counts.clipped += int(changed.sum())
    name = image if image is not None else f"image {det.image_id}"
    counts.rejects += [(source, box_item(name, boxes[i]), r) for i, r in enumerate(reasons) if r is not None]
    ok = np.array([r is None for r in reasons], dtype=bool)
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

"""Human-object pairs linked from frame to frame, and their class scores smoothed along the link.

Each sampled frame is scored on its own, so a pair's best class can flip between two close scores from
one frame to the next, and the pairs come in a different order each time. To keep the labels of an
annotated video steady, a pair of the new frame is linked to a *track* of the frames before it when both
boxes overlap: the human boxes and the object boxes each have IoU >= ``Linking.iou``, and the objects are
of the same COCO category. Pairs are linked greedily, the best-overlapping first; a pair that links to no
track starts a new one. A track that no pair has linked to for more than ``Linking.max_gap`` sampled
frames ends (its id is never reused).

Along a track, each class score is an exponential moving average over the sampled frames,
``smoothed = alpha * score + (1 - alpha) * smoothed_before`` with ``Linking.alpha`` (0.5: the newest frame
weighs half, the one before a quarter, ...: about the last 3 frames count); a class absent from a frame's
results (under its top-k) counts as 0 there. A new track starts at its first frame's scores. The raw scores
stay in the results; the smoothed ones are added beside them and are what the video draws.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Linking:
    """How pairs are linked across frames and their scores smoothed (module docstring)."""
    iou: float = 0.5        # both boxes overlap at least this much with the track's last boxes
    alpha: float = 0.5      # weight of the newest frame in the moving average
    max_gap: int = 2        # sampled frames a track may miss before it ends


@dataclass
class FramePair:
    """One scored pair of a frame: its boxes, the COCO-80 label of its object and its class scores."""
    human_box: np.ndarray
    object_box: np.ndarray
    object_label: int
    scores: dict[int, float]


@dataclass
class Track:
    """A pair followed across frames: its id, last boxes and smoothed class scores."""
    id: int
    human_box: np.ndarray
    object_box: np.ndarray
    object_label: int
    scores: dict[int, float] = field(default_factory=dict)
    last_step: int = 0
    length: int = 1

    def best(self) -> float:
        return max(self.scores.values(), default=0.0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of two sets of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class PairTracker:
    """Links the pairs of each sampled frame to tracks and smooths their scores (module docstring)."""

    def __init__(self, linking: Linking = Linking()):
        self.linking = linking
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, step: int, pairs: list[FramePair]) -> list[Track]:
        """The track of each pair of the frame at sampled position ``step`` (0, 1, ...), in the order of
        ``pairs``, after linking and smoothing. Tracks unseen for more than ``max_gap`` frames end."""
        link = self.linking
        # A track last seen at step s has missed step - s - 1 frames by now.
        self.tracks = [t for t in self.tracks if step - t.last_step - 1 <= link.max_gap]
        match: list[Track | None] = [None] * len(pairs)
        if pairs and self.tracks:
            overlap = np.minimum(iou([p.human_box for p in pairs], [t.human_box for t in self.tracks]),
                                 iou([p.object_box for p in pairs], [t.object_box for t in self.tracks]))
            same = np.array([[p.object_label == t.object_label for t in self.tracks] for p in pairs])
            overlap = np.where(same, overlap, -1.0)
            taken = set()
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                i, j = divmod(int(flat), len(self.tracks))
                if overlap[i, j] < link.iou:
                    break
                if match[i] is None and j not in taken:
                    match[i] = self.tracks[j]
                    taken.add(j)
        out = []
        for pair, track in zip(pairs, match):
            if track is None:
                track = Track(self.next_id, pair.human_box, pair.object_box, pair.object_label, dict(pair.scores), step)
                self.next_id += 1
                self.tracks.append(track)
            else:
                classes = set(track.scores) | set(pair.scores)
                track.scores = {c: link.alpha * pair.scores.get(c, 0.0) + (1 - link.alpha) * track.scores.get(c, 0.0)
                                for c in classes}
                track.human_box, track.object_box = pair.human_box, pair.object_box
                track.last_step, track.length = step, track.length + 1
            out.append(track)
        return out

"""Detections read from any format, checked row by row: what the evaluator scores and the rejects.

Every reader ends in :func:`check_rows`: a row whose image is not a test image, whose class has no HICO HOI
id, whose box is malformed or whose score is not a finite number becomes a reject row (source, item,
reason) instead of being dropped or failing the whole file; ``pipeline.rejects.check_loss`` then fails the
run when more than ``checks.max_reject_fraction`` of the rows were rejected. A file that cannot be read at
all (empty, truncated, not what its name says) is one :class:`UnreadableFile` naming it
(:func:`named_read_errors`).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pipeline import storage

# Codes a reader puts in ``hoi`` for a row it could not map to a HICO class.
HOI_OUT_OF_RANGE = -1
HOI_NO_ID = -2
NUM_HOIS = 600


@dataclass
class Detections:
    """Checked detections (test image index, 0-based HOI, continuous float64 boxes, score) and rejects."""

    image_id: np.ndarray
    hoi: np.ndarray
    human_box: np.ndarray
    object_box: np.ndarray
    score: np.ndarray
    rejects: list[dict] = field(default_factory=list)
    total: int = 0                      # rows read, kept + rejected
    format: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_id)

    def table(self) -> dict:
        """The columns ``pipeline.metrics.hicodet_map`` takes."""
        return {"image_id": self.image_id, "hoi": self.hoi, "human_box": self.human_box,
                "object_box": self.object_box, "score": self.score}


def check_rows(source: str, image_id, hoi, human_box, object_box, score, describe: Callable[[np.ndarray], list[str]],
               fmt: str, extra_rejects: list[dict] | None = None, extra_total: int = 0) -> Detections:
    """Splits rows into kept detections and reject rows with one reason each (the first that applies).

    Args:
        source: the file the rows came from (the rejects' ``source``).
        image_id: [K] test image index, -1 for an image that is not in the test set.
        hoi: [K] 0-based HOI id, or ``HOI_OUT_OF_RANGE`` / ``HOI_NO_ID`` where the reader could not map it.
        human_box, object_box: [K, 4] continuous boxes (NaN where the reader found no 4 numbers).
        score: [K] scores.
        describe: rows -> one label per row for the rejects' ``item`` (called on rejected rows only).
        fmt: the format's name.
        extra_rejects: rejects the reader made itself (rows that never became detections).
        extra_total: the rows behind ``extra_rejects``.
    """
    image_id = np.asarray(image_id, dtype=np.int64)
    hoi = np.asarray(hoi, dtype=np.int64)
    human_box = np.asarray(human_box, dtype=np.float64).reshape(-1, 4)
    object_box = np.asarray(object_box, dtype=np.float64).reshape(-1, 4)
    score = np.asarray(score, dtype=np.float64)
    reason = np.zeros(len(image_id), dtype=np.int8)
    checks = [
        (image_id < 0, "image is not in the test set"),
        (hoi == HOI_NO_ID, "verb-object pair has no HICO HOI id"),
        ((hoi < 0) | (hoi >= NUM_HOIS), f"HOI id is outside 1..{NUM_HOIS}"),
        (~np.isfinite(score), "score is not a finite number"),
        (_malformed(human_box), "human box is malformed (not 4 finite numbers with x1 <= x2, y1 <= y2)"),
        (_malformed(object_box), "object box is malformed (not 4 finite numbers with x1 <= x2, y1 <= y2)"),
    ]
    for code, (mask, _) in enumerate(checks, start=1):
        reason[(reason == 0) & mask] = code
    bad = np.flatnonzero(reason)
    rejects = list(extra_rejects or [])
    if bad.size:
        items = describe(bad)
        rejects += [{"source": source, "item": item, "reason": checks[reason[r] - 1][1]} for r, item in zip(bad, items)]
    keep = reason == 0
    if not keep.all():
        image_id, hoi, human_box, object_box, score = (a[keep] for a in (image_id, hoi, human_box, object_box, score))
    return Detections(image_id, hoi, human_box, object_box, score, rejects, int(len(reason)) + extra_total, fmt)


def _malformed(box: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(box).all(axis=1) | (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])


class UnreadableFile(ValueError):
    """An input file that cannot be read; the message names it and says why."""


@contextlib.contextmanager
def named_read_errors(path: str, fmt: str):
    """Any failure to read the input ``path`` as ``fmt`` as one ValueError naming the file: an empty file,
    a truncated pickle (EOFError), bytes that are not UTF-8, a damaged Parquet or CSV, a structure the reader
    did not expect. ``defr evaluate`` reads every input (results, annotations, images tables) inside it."""
    try:
        local = storage.local_path(path) if storage.is_local(path) else ""
        if local and os.path.isfile(local) and os.path.getsize(local) == 0:
            raise UnreadableFile(f"{path}: the file is empty (0 bytes)")
        yield
    except (FileNotFoundError, PermissionError, storage.StorageError, UnreadableFile):
        raise  # already name the file (or the store; or an inner input) and say what to do
    except ValueError as e:
        if path in str(e):
            raise
        raise UnreadableFile(f"{path}: cannot be read as {fmt}: {e}") from None
    except (EOFError, UnicodeDecodeError, OSError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise UnreadableFile(f"{path}: cannot be read as {fmt} ({type(e).__name__}: {e})") from None

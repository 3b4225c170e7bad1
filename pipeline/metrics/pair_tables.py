"""Column access and validation for the detection evaluator's inputs (Arrow tables or array mappings)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class PairColumns:
    """One table of human-object pairs as NumPy arrays (boxes float64 [K, 4] x1, y1, x2, y2)."""

    image_id: np.ndarray
    hoi: np.ndarray
    human_box: np.ndarray
    object_box: np.ndarray
    score: np.ndarray | None

    def __len__(self) -> int:
        return len(self.image_id)

    def take(self, rows: np.ndarray) -> "PairColumns":
        return PairColumns(self.image_id[rows], self.hoi[rows], self.human_box[rows],
                           self.object_box[rows], None if self.score is None else self.score[rows])


def pair_columns(table, name: str, num_classes: int, with_score: bool) -> PairColumns:
    """Reads and checks image_id, hoi, human_box, object_box (and score) from ``table``.

    Args:
        table: a ``pyarrow.Table`` (PAIRS / HOI_DETECTIONS schema) or a mapping of column -> array
            (e.g. a dict or a pandas DataFrame; boxes as [K, 4] arrays or sequences of 4 numbers).
        name: the table's name in error messages.
        num_classes: HOI ids must lie in [0, num_classes).
        with_score: also read ``score``, which must be finite.

    Raises:
        ValueError: naming the table, row and field, for a missing column, a HOI id out of range,
            a non-finite score or box, or a box with x2 < x1 or y2 < y1.
    """
    fields = ["image_id", "hoi", "human_box", "object_box"] + (["score"] if with_score else [])
    names = table.column_names if isinstance(table, pa.Table) else list(table.keys())
    missing = [f for f in fields if f not in names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {fields}")
    image_id = np.asarray(_column(table, "image_id"), dtype=np.int64)
    hoi = np.asarray(_column(table, "hoi"), dtype=np.int64)
    boxes = {f: _boxes(table, f, name, len(image_id)) for f in ("human_box", "object_box")}
    score = np.asarray(_column(table, "score"), dtype=np.float64) if with_score else None
    bad = (hoi < 0) | (hoi >= num_classes)
    if bad.any():
        r = int(np.argmax(bad))
        raise ValueError(f"{name} row {r}: hoi {hoi[r]} is outside [0, {num_classes})")
    if score is not None and not np.isfinite(score).all():
        r = int(np.argmax(~np.isfinite(score)))
        raise ValueError(f"{name} row {r}: score is {score[r]}; scores must be finite")
    for field, box in boxes.items():
        if not np.isfinite(box).all():
            r = int(np.argmax(~np.isfinite(box).all(axis=1)))
            raise ValueError(f"{name} row {r}: {field} {box[r].tolist()} is not finite")
        flipped = (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])
        if flipped.any():
            r = int(np.argmax(flipped))
            raise ValueError(f"{name} row {r}: {field} {box[r].tolist()} has x2 < x1 or y2 < y1; "
                             "expected [x1, y1, x2, y2]")
    return PairColumns(image_id, hoi, boxes["human_box"], boxes["object_box"], score)


def _column(table, field: str):
    if isinstance(table, pa.Table):
        return table.column(field).to_numpy()
    return table[field]


def _boxes(table, field: str, name: str, rows: int) -> np.ndarray:
    if isinstance(table, pa.Table):
        col = table.column(field).combine_chunks()
        if col.null_count:
            raise ValueError(f"{name}: {field} has {col.null_count} null box(es)")
        if pa.types.is_fixed_size_list(col.type) and col.type.list_size == 4:
            flat = col.flatten().to_numpy(zero_copy_only=False)
        else:
            lengths = np.asarray(col.value_lengths())
            if rows and (lengths != 4).any():
                r = int(np.argmax(lengths != 4))
                raise ValueError(f"{name} row {r}: {field} has {lengths[r]} numbers, expected 4")
            flat = col.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float64).reshape(-1, 4)
    values = table[field]
    arr = np.asarray(values, dtype=np.float64) if not _is_ragged(values) else np.stack(
        [np.asarray(v, dtype=np.float64) for v in values])
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: {field} has shape {arr.shape}, expected [{rows}, 4]")
    return arr


def _is_ragged(values) -> bool:
    try:
        return np.asarray(values).dtype == object
    except ValueError:
        return True

"""Dense label matrices from the ``images`` table's sparse label lists (every dataset uses HICO's coding)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def label_matrix(images: pa.Table, num_classes: int) -> np.ndarray:
    """Returns float32 [N, C] labels in HICO's coding: +1 positive, -1 negative, 0 ambiguous, NaN unknown.

    Args:
        images: rows with ``positives``, ``negatives``, ``ambiguous`` lists of class ids.
        num_classes: C, the rows of the classes table.

    Raises:
        ValueError: naming the row when a class id is out of range or listed twice with different labels.
    """
    n = images.num_rows
    out = np.full((n, num_classes), np.nan, dtype=np.float32)
    for column, value in (("negatives", -1.0), ("ambiguous", 0.0), ("positives", 1.0)):
        lists = images.column(column).combine_chunks()
        offsets = np.asarray(lists.offsets)
        hois = np.asarray(lists.values.to_numpy(zero_copy_only=False), dtype=np.int64)
        rows = np.repeat(np.arange(n), np.diff(offsets))
        bad = (hois < 0) | (hois >= num_classes)
        if bad.any():
            r = int(rows[np.argmax(bad)])
            raise ValueError(f"images row {r} (image_id {images.column('image_id')[r].as_py()}): "
                             f"{column} holds HOI id {int(hois[bad][0])} outside [0, {num_classes})")
        clash = ~np.isnan(out[rows, hois])
        if clash.any():
            r = int(rows[np.argmax(clash)])
            raise ValueError(f"images row {r}: HOI {int(hois[clash][0])} is listed in {column} and "
                             "in another label list")
        out[rows, hois] = value
    return out


def object_present(labels: np.ndarray, hoi_object: np.ndarray, num_objects: int | None = None) -> np.ndarray:
    """[N, num_objects] bool: the image is annotated for the object (any known label of its HOIs).

    HICO annotates every HOI of an object present in the image (+1, -1 or 0); an absent object's HOIs
    stay NaN. This is the "known object" of the official evaluation.
    """
    hoi_object = np.asarray(hoi_object, dtype=np.int64)
    num_objects = int(hoi_object.max()) + 1 if num_objects is None else num_objects
    known = ~np.isnan(labels)
    present = np.zeros((labels.shape[0], num_objects), dtype=bool)
    for o in range(num_objects):
        present[:, o] = known[:, hoi_object == o].any(axis=1)
    return present

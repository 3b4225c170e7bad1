"""HICO image-level scores from any model: one row per test image with its 600 class scores.

Formats: a table (``.parquet``, ``.jsonl``, ``.csv``) with ``image`` (file name, e.g.
``HICO_test2015_00000001.jpg``) and ``scores`` (600 numbers in HICO's HOI order; in a CSV the list as
text), or the pipeline's ``image_scores.parquet`` (``image_id`` of a prepared dataset, with ``--images``).
A row of an image that is not a test image, a repeated image, a score list that is not 600 finite numbers
becomes a reject row; a test image without a score row is ranked last in every class (and listed).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.results.own_tables import _numbers, read_table_file


def read_image_scores(path: str, file_names: list[str], num_classes: int = 600,
                      images: str = "") -> tuple[np.ndarray, list[dict], int]:
    """([N, C] scores in ``file_names`` order, -inf for a missing image; reject rows; rows read).

    Raises:
        ValueError: missing columns, or the pipeline's table without ``images``.
    """
    table = read_table_file(path)
    if "image" in table.column_names:
        names = [str(v) if v is not None else "" for v in table.column("image").to_pylist()]
    elif "image_id" in table.column_names:
        if not images:
            raise ValueError(f"{path}: image_scores by image_id: pass the prepared dataset's images.parquet (--images)")
        im = storage.read_parquet(images, columns=["image_id", "file_name"])
        by_id = dict(zip(im.column("image_id").to_pylist(), im.column("file_name").to_pylist()))
        names = [by_id.get(i, f"image_id {i}") for i in table.column("image_id").to_pylist()]
    else:
        raise ValueError(f"{path}: missing column 'image' (or 'image_id'); it has {table.column_names}")
    if "scores" not in table.column_names:
        raise ValueError(f"{path}: missing column 'scores' (a list of {num_classes} numbers per image)")
    col = table.column("scores").combine_chunks()
    if pa.types.is_string(col.type):
        col = pc.split_pattern(pc.utf8_trim(col, "[] "), ",")
    lengths = np.where(np.asarray(col.is_null()), 0, np.asarray(pc.fill_null(pc.list_value_length(col), 0)))
    index = {n: i for i, n in enumerate(file_names)}
    out = np.full((len(file_names), num_classes), -np.inf)
    seen = np.zeros(len(file_names), dtype=bool)
    rejects = []
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = _numbers(pc.list_flatten(col)) if lengths.sum() else np.zeros(0)
    first_row = 2 if path.endswith(".csv") else 1
    for r, name in enumerate(names):
        i = index.get(name.rsplit("/", 1)[-1], -1)
        item = f"row {r + first_row} ({name})"
        reason = None
        if i < 0:
            reason = "image is not in the test set"
        elif seen[i]:
            reason = "image repeated (the first row is used)"
        elif lengths[r] != num_classes:
            reason = f"{lengths[r]} scores, expected {num_classes}"
        else:
            values = flat[offsets[r]:offsets[r + 1]]
            if not np.isfinite(values).all():
                reason = "a score is not a finite number"
            else:
                out[i] = values
                seen[i] = True
        if reason:
            rejects.append({"source": path, "item": item, "reason": reason})
    missing = np.flatnonzero(~seen)
    rejects += [{"source": path, "item": file_names[i], "reason": "test image has no scores (ranked last)"}
                for i in missing]
    return out, rejects, len(names) + len(missing)

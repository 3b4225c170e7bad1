"""Detections as a plain table, and the pipeline's own ``hoi_detections.parquet``.

Plain table (``.csv``, ``.parquet``, ``.jsonl``), one row per (human, object, HOI) detection:

* ``image``: test image file name, e.g. ``HICO_test2015_00000001.jpg`` (a folder prefix is ignored);
* ``hoi``: official 1-based HOI id, 1..600 (``hico_list_hoi.txt``);
* ``human_box``, ``object_box``: ``[x1, y1, x2, y2]`` in the annotation's own convention, 1-based inclusive
  pixels as in ``anno_bbox.mat`` / ``instances_test2015.json`` (a CSV cell holds the list as text);
* ``score``: the detection's score.

The pipeline's own ``hoi_detections.parquet`` (the ``score_regions`` stage, ``defr detect``): ``image_id``
of the prepared dataset (mapped to file names through its ``images.parquet``), 0-based ``hoi``, continuous
boxes [x1 - 1, y1 - 1, x2, y2] (``pipeline.schemas``).
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.results.records import HOI_OUT_OF_RANGE, NUM_HOIS, Detections, check_rows
from pipeline.results.testset import HicoDetTestSet

TABLE_COLUMNS = ("image", "hoi", "human_box", "object_box", "score")
OWN_COLUMNS = ("image_id", "hoi", "human_box", "object_box", "score")


def read_table_file(path: str) -> pa.Table:
    """A ``.csv``, ``.parquet`` or ``.jsonl`` file as an Arrow table."""
    if path.endswith(".parquet"):
        return storage.read_parquet(path)
    with storage.open_file(path, "rb") as f:
        data = f.read()
    if path.endswith(".csv"):
        import pyarrow.csv as pcsv

        return pcsv.read_csv(pa.BufferReader(data), convert_options=pcsv.ConvertOptions(
            column_types={"image": pa.string(), "human_box": pa.string(), "object_box": pa.string()}))
    if path.endswith((".jsonl", ".ndjson")):
        import pyarrow.json as pjson

        try:
            return pjson.read_json(pa.BufferReader(data))
        except pa.ArrowInvalid:
            # Python's json reads NaN / Infinity, which Arrow refuses; a NaN score is a reject, not a crash.
            rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
            return pa.Table.from_pylist(rows)
    raise ValueError(f"{path}: expected a .csv, .parquet or .jsonl table")


def read_plain_table(path: str, test: HicoDetTestSet, table: pa.Table | None = None) -> Detections:
    """Reads a plain detection table (columns ``TABLE_COLUMNS``, official 1-based ids and boxes).

    Raises:
        ValueError: a missing column (naming the file and the columns it has).
    """
    table = read_table_file(path) if table is None else table
    _require(table, TABLE_COLUMNS, path)
    names = table.column("image").combine_chunks()
    if not pa.types.is_string(names.type) and not pa.types.is_large_string(names.type):
        names = pc.cast(names, pa.string())
    image = _image_ids(names, test)
    hoi = _numbers(table.column("hoi"))
    hoi0 = np.where(np.isfinite(hoi) & (hoi == np.round(hoi)) & (hoi >= 1) & (hoi <= NUM_HOIS),
                    np.nan_to_num(hoi, nan=0).astype(np.int64) - 1, HOI_OUT_OF_RANGE)
    human, obj = (_official_to_continuous(parse_boxes(table.column(c))) for c in ("human_box", "object_box"))
    score = _numbers(table.column("score"))
    first_row = 2 if path.endswith(".csv") else 1     # the header is row 1 of a CSV

    def describe(bad: np.ndarray) -> list[str]:
        return [f"row {r + first_row} ({names[int(r)].as_py()})" for r in bad]

    return check_rows(path, image, hoi0, human, obj, score, describe, "table")


def read_own_parquet(path: str, test: HicoDetTestSet, images: str) -> Detections:
    """Reads the pipeline's ``hoi_detections.parquet``; ``images`` is the prepared ``images.parquet`` that
    names its image ids.

    Raises:
        ValueError: no ``images`` table given, or a missing column.
    """
    if not images:
        raise ValueError(f"{path}: a pipeline hoi_detections.parquet names images by the prepared dataset's image_id; "
                         "pass the images.parquet of that dataset (--images data/prepared/images.parquet)")
    table = storage.read_parquet(path)
    _require(table, OWN_COLUMNS, path)
    im = storage.read_parquet(images, columns=["image_id", "file_name"])
    ids = np.asarray(im.column("image_id").to_numpy())
    order = np.argsort(ids)
    det_ids = np.asarray(table.column("image_id").to_numpy())
    pos = np.clip(np.searchsorted(ids[order], det_ids), 0, max(len(ids) - 1, 0))
    known = ids[order][pos] == det_ids if len(ids) else np.zeros(len(det_ids), bool)
    file_index = test.image_index(im.column("file_name").to_pylist())
    image = np.where(known, file_index[order][pos] if len(ids) else -1, -1)
    hoi = np.asarray(table.column("hoi").to_numpy(), dtype=np.int64)
    human, obj = (parse_boxes(table.column(c)) for c in ("human_box", "object_box"))
    score = _numbers(table.column("score"))

    def describe(bad: np.ndarray) -> list[str]:
        return [f"row {r + 1} (image_id {det_ids[r]})" for r in bad]

    return check_rows(path, image, hoi, human, obj, score, describe, "pipeline")


def parse_boxes(column) -> np.ndarray:
    """[K, 4] float64 from a list column or a text column of ``[x1, y1, x2, y2]``; NaN rows where a value
    is missing, does not have 4 numbers or does not parse."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(col)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.split_pattern(pc.utf8_trim(col, "[]() "), ",")
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise ValueError(f"box column of type {col.type}: expected [x1, y1, x2, y2] lists")
    if pa.types.is_fixed_size_list(col.type):
        lengths = np.full(n, col.type.list_size)
    else:
        lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0))
    lengths = np.where(np.asarray(col.is_null()), 0, lengths)
    out = np.full((n, 4), np.nan)
    good = lengths == 4
    if not good.any():
        return out
    out[good] = _numbers(pc.list_flatten(col.filter(pa.array(good)))).reshape(-1, 4)
    return out


def _numbers(col) -> np.ndarray:
    """A numeric (or numeric text) column as float64, NaN for nulls and for text that is not a number."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.utf8_trim_whitespace(col)
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return np.array([_float(v) for v in col.to_pylist()], dtype=np.float64)
    elif not pa.types.is_floating(col.type):
        col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False))


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _image_ids(names: pa.Array, test: HicoDetTestSet) -> np.ndarray:
    """Test image index of every row (-1 = not a test image), one dictionary lookup per distinct name."""
    encoded = pc.dictionary_encode(names)
    index = test.image_index([v if v is not None else "" for v in encoded.dictionary.to_pylist()])
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.where(codes >= 0, index[np.maximum(codes, 0)] if len(index) else -1, -1)


def _official_to_continuous(boxes: np.ndarray) -> np.ndarray:
    """1-based inclusive [x1, y1, x2, y2] -> the pipeline's continuous [x1 - 1, y1 - 1, x2, y2]."""
    out = boxes.copy()
    out[:, :2] -= 1.0
    return out


def _require(table: pa.Table, columns: tuple[str, ...], path: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; it has {table.column_names}, expected {list(columns)}")

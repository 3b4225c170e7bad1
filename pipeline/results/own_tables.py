"""Detections as a plain table, and the pipeline's own ``hoi_detections.parquet``.

Plain table (``.csv``, ``.parquet``, ``.jsonl``), one row per (human, object, HOI) detection:

* ``image``: test image file name, e.g. ``HICO_test2015_00000001.jpg`` (a folder prefix is ignored);
* ``hoi``: official 1-based HOI id, 1..600 (``hico_list_hoi.txt``); 0-based ids (0..599, common in the peers'
  code) only when the reader is told so (``hoi_base="0"``, ``defr evaluate --hoi-base 0``): a table whose ids
  look 0-based (some 0, no 600) is refused otherwise, since read as 1-based every id names the next class;
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
from pipeline.choices import HOI_BASES
from pipeline.results.records import HOI_OUT_OF_RANGE, NUM_HOIS, Detections, check_rows, named_read_errors
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

        # One thread: after a parse error Arrow's reader threads could still be running at exit, which
        # aborted the process (exit 134, "terminate called") in about one run in three; serial reading is
        # also no slower here (1M rows: 0.9 s vs 2.6 s threaded on 2 busy cores).
        return pcsv.read_csv(pa.BufferReader(data), read_options=pcsv.ReadOptions(use_threads=False),
                             convert_options=pcsv.ConvertOptions(column_types={
                                 "image": pa.string(), "human_box": pa.string(), "object_box": pa.string()}))
    if path.endswith((".jsonl", ".ndjson")):
        import pyarrow.json as pjson

        try:
            return pjson.read_json(pa.BufferReader(data))
        except pa.ArrowInvalid:
            # Python's json reads NaN / Infinity, which Arrow refuses; a NaN score is a reject, not a crash.
            rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
            return pa.Table.from_pylist(rows)
    raise ValueError(f"{path}: expected a .csv, .parquet or .jsonl table")


def read_plain_table(path: str, test: HicoDetTestSet, table: pa.Table | None = None,
                     hoi_base: str = "auto") -> Detections:
    """Reads a plain detection table (columns ``TABLE_COLUMNS``, official 1-based ids and boxes).

    Args:
        hoi_base: ``"1"`` (official ids), ``"0"`` (0-based ids), or ``"auto"``: 1-based, refusing a table
            whose ids look 0-based (:func:`hoi_id_base`). The base read is named in the result's notes.

    Raises:
        ValueError: a missing column (naming the file and the columns it has), or ids that look 0-based.
    """
    table = read_table_file(path) if table is None else table
    _require(table, TABLE_COLUMNS, path)
    names = table.column("image").combine_chunks()
    if not pa.types.is_string(names.type) and not pa.types.is_large_string(names.type):
        names = pc.cast(names, pa.string())
    image = _image_ids(names, test)
    hoi = _numbers(table.column("hoi"))
    base = hoi_id_base(hoi, hoi_base, path)
    hoi0 = np.where(np.isfinite(hoi) & (hoi == np.round(hoi)) & (hoi >= base) & (hoi < NUM_HOIS + base),
                    np.nan_to_num(hoi, nan=0).astype(np.int64) - base, HOI_OUT_OF_RANGE)
    human, obj = (_official_to_continuous(parse_boxes(table.column(c))) for c in ("human_box", "object_box"))
    score = _numbers(table.column("score"))
    first_row = 2 if path.endswith(".csv") else 1     # the header is row 1 of a CSV

    def describe(bad: np.ndarray) -> list[str]:
        return [f"row {r + first_row} ({names[int(r)].as_py()})" for r in bad]

    det = check_rows(path, image, hoi0, human, obj, score, describe, "table")
    det.notes.append(f"HOI ids read as {base}-based ({'official, 1..600' if base else '0..599'}; "
                     f"hoi_base {hoi_base})")
    return det


def hoi_id_base(hoi: np.ndarray, stated: str, path: str) -> int:
    """The base of a plain table's HOI ids: ``stated``, or with ``"auto"`` 1 (the official ids), unless the
    ids look 0-based: some row has id 0, none has 600 and none is out of range in both readings, so that an
    off-by-one explains every id rejected as 1-based; read as 1-based, the rows of id 0 would be rejected
    and every other row scored as the next class (a wrong mAP with exit 0).

    Raises:
        ValueError: ``stated`` is not one of ``HOI_BASES``, or ``"auto"`` and the ids look 0-based.
    """
    if stated not in HOI_BASES:
        raise ValueError(f"hoi_base {stated!r}: expected one of {HOI_BASES}")
    if stated != "auto":
        return int(stated)
    zeros, top = int(np.sum(hoi == 0)), int(np.sum(hoi == NUM_HOIS))
    others = int(np.sum(np.isfinite(hoi) & ((hoi < 0) | (hoi > NUM_HOIS))))  # out of range either way
    if zeros and not top and not others:
        raise ValueError(f"{path}: the HOI ids look 0-based ({zeros} row(s) with hoi 0, none with {NUM_HOIS}): read "
                         f"as the official 1-based ids (1..{NUM_HOIS}) every row would be scored as the next class. "
                         "State the base: --hoi-base 0 (ids 0..599, read +1) or --hoi-base 1 (official ids), "
                         "or write the official ids (add 1)")
    return 1


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
    with named_read_errors(images, "the prepared images table"):
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

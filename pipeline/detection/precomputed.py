"""Importing detections made elsewhere, validated against the image list.

Two formats:

- ``hico_json``: one JSON file per image, named after the image (``HICO_test2015_00000001.json``), with
  ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "scores": [...]}``: the format in which the
  HICO-DET literature shares its detections (fredzzhang/hicodet ``detections/``, used by SCG and UPT,
  including the DRG fine-tuned detections). Labels there are HICO's alphabetical objects (``hico80``,
  person = 49); boxes are continuous pixel coordinates of the original image.
- ``table``: a Parquet or CSV file with a row per box: ``image_id`` or ``file_name``; ``box`` (list of 4)
  or ``x1, y1, x2, y2``; ``label``; ``score``.

Per-image problems (missing or malformed file, a row for an image that is not in the list) go to the
rejects report; a label outside the declared label space is an error (the whole file is then suspect).
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline import storage
from pipeline.detection.boxes import ImageDetections
from pipeline.detection.classes import to_coco80

FORMATS = ("hico_json", "table")


def _stem(file_name: str) -> str:
    return PurePosixPath(str(file_name)).stem


def _read_json(uri: str) -> tuple[dict | None, str | None]:
    try:
        with storage.open_file(uri) as f:
            return json.load(f), None
    except FileNotFoundError:
        return None, "no detection file for this image"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"not valid JSON: {e}"


def _parse(doc, uri: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray] | None, str | None]:
    if not isinstance(doc, dict) or not {"boxes", "labels", "scores"} <= doc.keys():
        return None, "expected a JSON object with keys boxes, labels, scores"
    try:
        boxes = np.asarray(doc["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(doc["labels"], dtype=np.float64).reshape(-1)
        scores = np.asarray(doc["scores"], dtype=np.float64).reshape(-1)
    except (ValueError, TypeError) as e:
        return None, f"boxes must be [N, 4] numbers and labels, scores [N] numbers: {e}"
    if not len(boxes) == len(labels) == len(scores):
        return None, f"lengths differ: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores"
    if labels.size and np.any(labels != np.round(labels)):
        return None, "labels must be integers"
    return (boxes, labels.astype(np.int64), scores), None


def read_hico_json(root: str, images: pa.Table, label_space: str = "hico80", workers: int = 16
                   ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Reads ``<root>/<image stem>.json`` for every image of ``images`` (image_id, file_name).

    Returns:
        (detections per readable image, reject rows (source, item, reason), metadata counts).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a label outside ``label_space`` (names the file).
    """
    if not storage.exists(root):
        raise FileNotFoundError(f"detect.precomputed.path: directory {root} does not exist")
    names = images["file_name"].to_pylist()
    uris = [storage.join(root, _stem(n) + ".json") for n in names]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        docs = list(tqdm(pool.map(_read_json, uris), total=len(uris), desc="reading detections",
                         unit="file", mininterval=1.0))
    dets, rejects = [], []
    for image_id, name, uri, (doc, problem) in zip(images["image_id"].to_pylist(), names, uris, docs):
        parsed, problem = (None, problem) if problem else _parse(doc, uri)
        if problem:
            rejects.append((uri, name, problem))
            continue
        boxes, labels, scores = parsed
        labels = to_coco80(labels, label_space, source=f"{uri} (detect.precomputed.label_space)")
        dets.append(ImageDetections(int(image_id), boxes, labels, scores))
    fs, path = storage.filesystem(root, "detect.precomputed.path")
    known = {_stem(n) for n in names}
    unmatched = sum(1 for p in fs.glob(path.rstrip("/") + "/*.json") if _stem(p) not in known)
    return dets, rejects, {"files_not_in_image_list": unmatched}


def _load_table(uri: str) -> pa.Table:
    if not storage.exists(uri):
        raise FileNotFoundError(f"detect.precomputed.path: file {uri} does not exist")
    with storage.open_file(uri) as f:
        data = f.read()
    if uri.endswith(".csv"):
        return pacsv.read_csv(io.BytesIO(data))
    if uri.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data))
    raise ValueError(f"detect.precomputed.path: {uri} must end in .parquet or .csv")


def read_table(uri: str, images: pa.Table, label_space: str = "coco80"
               ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Reads a Parquet / CSV detections table, keyed by image_id or file_name (see module doc)."""
    table = _load_table(uri)
    cols = set(table.column_names)
    key = "image_id" if "image_id" in cols else "file_name" if "file_name" in cols else None
    has_box = "box" in cols or {"x1", "y1", "x2", "y2"} <= cols
    missing = [c for c, ok in (("image_id or file_name", key), ("box or x1, y1, x2, y2", has_box),
                               ("label", "label" in cols), ("score", "score" in cols)) if not ok]
    if missing:
        raise ValueError(f"{uri}: missing column(s) {missing}; has {sorted(cols)}")
    if "box" in cols:
        boxes = np.asarray(table["box"].to_pylist(), dtype=np.float64).reshape(-1, 4)
    else:
        boxes = np.stack([table[c].to_numpy().astype(np.float64) for c in ("x1", "y1", "x2", "y2")], 1)
    labels = to_coco80(table["label"].to_numpy().astype(np.int64), label_space,
                       source=f"{uri} (detect.precomputed.label_space)")
    scores = table["score"].to_numpy().astype(np.float64)
    if key == "file_name":
        lookup = dict(zip(images["file_name"].to_pylist(), images["image_id"].to_pylist()))
        keys = table["file_name"].to_pylist()
        ids = np.array([lookup.get(k, -1) for k in keys], dtype=np.int64)
    else:
        keys = table["image_id"].to_pylist()
        ids = np.asarray(keys, dtype=np.int64)
        ids = np.where(np.isin(ids, images["image_id"].to_numpy()), ids, -1)
    rejects = [(uri, f"row {i}", f"{key} {keys[i]!r} is not an image of the image list")
               for i in np.flatnonzero(ids < 0)]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dets = []
    for image_id in images["image_id"].to_pylist():
        rows = order[np.searchsorted(sorted_ids, image_id):np.searchsorted(sorted_ids, image_id, "right")]
        dets.append(ImageDetections(int(image_id), boxes[rows], labels[rows], scores[rows]))
    return dets, rejects, {"rows": table.num_rows}


def read_precomputed(fmt: str, path: str, images: pa.Table, label_space: str
                     ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Dispatches on ``fmt`` (``hico_json`` | ``table``)."""
    if not path:
        raise ValueError("detect.precomputed.path is empty: give the detections directory or file")
    if fmt == "hico_json":
        return read_hico_json(path, images, label_space)
    if fmt == "table":
        return read_table(path, images, label_space)
    raise ValueError(f"detect.precomputed.format must be one of {FORMATS}, got {fmt!r}")

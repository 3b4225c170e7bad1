"""Importing detections made elsewhere, validated against the image list.

Three formats:

- ``hico_json``: one JSON file per image, named after the image (``HICO_test2015_00000001.json``), with
  ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "scores": [...]}``: the format in which the
  HICO-DET literature shares its detections (fredzzhang/hicodet ``detections/``, used by SCG and UPT,
  including the DRG fine-tuned detections). Labels there are HICO's alphabetical objects (``hico80``,
  person = 49); boxes are continuous pixel coordinates of the original image.
- ``table``: a Parquet or CSV file with a row per box: ``image_id`` or ``file_name``; ``box`` (list of 4)
  or ``x1, y1, x2, y2``; ``label``; ``score``.
- ``boxes_json``: one JSON file, image file name -> list of ``{"category": COCO name, "box": [x1, y1, x2,
  y2], "score": s}`` (pixels; ``score`` defaults to 1 for hand-drawn boxes): the form of
  ``shared/data/photos/boxes.json``, and the simplest to write by hand. Categories are COCO names in any
  usual spelling ("traffic light", "motorbike", ...); the label space does not apply.

Per-image problems (missing or malformed file, a row for an image that is not in the list) go to the
rejects report; a label outside the declared label space is an error (the whole file is then suspect).
"""
from __future__ import annotations

import difflib
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
from pipeline.storage.names import name_problem
from pipeline.detection.boxes import ImageDetections
from pipeline.classes.coco import coco80_names, normalize, to_coco80

from pipeline.choices import PRECOMPUTED_FORMATS as FORMATS


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
    rejects = [(uri, f"row {i}", (key == "file_name" and name_problem(keys[i], "the image list"))
                or f"{key} {keys[i]!r} is not an image of the image list") for i in np.flatnonzero(ids < 0)]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dets = []
    for image_id in images["image_id"].to_pylist():
        rows = order[np.searchsorted(sorted_ids, image_id):np.searchsorted(sorted_ids, image_id, "right")]
        dets.append(ImageDetections(int(image_id), boxes[rows], labels[rows], scores[rows]))
    return dets, rejects, {"rows": table.num_rows}


def _entry_boxes(entries, index: dict[str, int]) -> tuple[tuple | None, str | None, str | None]:
    """(boxes, labels, scores) of one image's list of ``{category, box, score}``; else a problem of the
    entry (a reject) or an unknown category (an error: the whole file is then suspect)."""
    if not isinstance(entries, list):
        return None, f"expected a list of {{category, box, score}}, got {type(entries).__name__}", None
    boxes, labels, scores = [], [], []
    for j, e in enumerate(entries):
        if not isinstance(e, dict) or "category" not in e or "box" not in e:
            return None, f"entry {j}: expected an object with keys category, box (and score)", None
        try:
            box = [float(v) for v in e["box"]]
            score = float(e.get("score", 1.0))
        except (TypeError, ValueError):
            return None, f"entry {j}: box must be 4 numbers and score a number, got {e['box']!r}", None
        if len(box) != 4:
            return None, f"entry {j}: box must be [x1, y1, x2, y2], got {len(box)} numbers", None
        name = normalize(str(e["category"]))
        if name not in index:
            close = difflib.get_close_matches(name, list(index), n=3, cutoff=0.6)
            return None, None, f"entry {j}: category {e['category']!r} is not a COCO class (close: {close})"
        boxes.append(box)
        labels.append(index[name])
        scores.append(score)
    return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64),
            np.asarray(scores, np.float64)), None, None


def read_boxes_json(uri: str, images: pa.Table) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Reads a ``boxes_json`` file (module doc) for the images of ``images`` (image_id, file_name).

    An image is found by its file name, or by a key whose last path part is its file name. Images without
    an entry, or whose entry is malformed, are reject rows.

    Returns:
        (detections per image found, reject rows (source, item, reason), metadata counts).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a JSON object, or a category that is not a COCO class (names the image and entry).
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"boxes file {uri} does not exist")
    doc, problem = _read_json(uri)
    if problem or not isinstance(doc, dict):
        raise ValueError(f"{uri}: {problem or 'not a JSON object'}; expected image file name -> list of "
                         '{"category": COCO name, "box": [x1, y1, x2, y2], "score": s}')
    by_name: dict[str, list[str]] = {}
    dets, rejects, used = [], [], set()
    for row, key in enumerate(doc, start=1):
        problem = name_problem(key, "the images given")
        if problem:  # an absolute or escaping key names no image of the run; it never matches one
            rejects.append((uri, key, f"{problem} (key {row} of the boxes file)"))
            used.add(key)
            continue
        by_name.setdefault(PurePosixPath(str(key)).name, []).append(key)
    index = {n: i for i, n in enumerate(coco80_names())}
    for image_id, name in zip(images["image_id"].to_pylist(), images["file_name"].to_pylist()):
        exact = name in doc and not name_problem(name)
        keys = [name] if exact else by_name.get(PurePosixPath(str(name)).name, [])
        if len(keys) != 1:
            rejects.append((uri, name, "no entry for this image in the boxes file" if not keys else
                            f"several entries match this file name: {keys[:3]}"))
            continue
        used.add(keys[0])
        parsed, problem, error = _entry_boxes(doc[keys[0]], index)
        if error:
            raise ValueError(f"{uri}: image {keys[0]!r}, {error}")
        if problem:
            rejects.append((uri, name, problem))
            continue
        dets.append(ImageDetections(int(image_id), *parsed))
    return dets, rejects, {"entries_not_in_image_list": len(set(doc) - used)}


def sniff_format(path: str) -> str:
    """The precomputed format of ``path``: a folder is ``hico_json``, ``.parquet`` / ``.csv`` a
    ``table``, a ``.json`` file ``boxes_json``.

    Raises:
        ValueError: anything else.
    """
    fs, local = storage.filesystem(str(path), "boxes")
    if fs.isdir(local):
        return "hico_json"
    if str(path).endswith((".parquet", ".csv")):
        return "table"
    if str(path).endswith(".json"):
        return "boxes_json"
    raise ValueError(f"boxes {path}: expected a folder of per-image JSON files, a .parquet / .csv table, or "
                     "a .json file of image name -> [{category, box, score}]")


def read_precomputed(fmt: str, path: str, images: pa.Table, label_space: str
                     ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Dispatches on ``fmt`` (``hico_json`` | ``table`` | ``boxes_json``)."""
    if not path:
        raise ValueError("detect.precomputed.path is empty: give the detections directory or file")
    if fmt == "hico_json":
        return read_hico_json(path, images, label_space)
    if fmt == "table":
        return read_table(path, images, label_space)
    if fmt == "boxes_json":
        return read_boxes_json(path, images)
    raise ValueError(f"detect.precomputed.format must be one of {FORMATS}, got {fmt!r}")

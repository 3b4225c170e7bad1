"""Importing detections made elsewhere, validated against the image list.

Three formats:

- ``hico_json``: one JSON file per image, named after the image (``HICO_test2015_00000001.json``), with
  ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "scores": [...]}``: the format in which the
  HICO-DET literature shares its detections (fredzzhang/hicodet ``detections/``, used by SCG and UPT,
  including the DRG fine-tuned detections). Labels there are HICO's alphabetical objects (``hico80``,
  person = 49); boxes are continuous pixel coordinates of the original image.
- ``table``: a Parquet or CSV file with a row per box: ``image_id``, ``file_name`` or ``image``; ``box`` (list
  of 4, or ``"[x1, y1, x2, y2]"`` text in a CSV) or ``x1, y1, x2, y2``; ``label`` (integers of the label space)
  or ``category`` (COCO names); ``score``; and ``frame`` for the rows of a video's frames (0-based index of
  the decoded frame; :func:`read_boxes_table`).
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


def _box_values(column: pa.ChunkedArray) -> tuple[np.ndarray, list[int]]:
    """[N, 4] boxes of a ``box`` column (lists, or text such as ``"[x1, y1, x2, y2]"`` in a CSV file) and the
    rows whose box is not 4 numbers (NaN there)."""
    boxes, bad = np.full((len(column), 4), np.nan), []
    for i, value in enumerate(column.to_pylist()):
        try:
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else value.replace(",", " ").split()
            box = [float(v) for v in value]
            if len(box) != 4:
                raise ValueError
            boxes[i] = box
        except (TypeError, ValueError):
            bad.append(i)
    return boxes, bad


def _labels(table: pa.Table, uri: str, label_space: str) -> np.ndarray:
    """COCO-80 labels of a table's ``label`` (integers of ``label_space``) or ``category`` (COCO names) column.

    Raises:
        ValueError: a label outside the label space or a category that is not a COCO class (names the row).
    """
    if "label" in table.column_names:
        return to_coco80(table["label"].to_numpy().astype(np.int64), label_space,
                         source=f"{uri} (detect.precomputed.label_space)")
    index = {n: i for i, n in enumerate(coco80_names())}
    labels = np.empty(table.num_rows, np.int64)
    for i, name in enumerate(table["category"].to_pylist()):
        key = normalize(str(name))
        if key not in index:
            close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
            raise ValueError(f"{uri}: row {i}: category {name!r} is not a COCO class (close: {close})")
        labels[i] = index[key]
    return labels


def _frames(table: pa.Table) -> tuple[np.ndarray, list[int]]:
    """The ``frame`` column as int64 (-1 where empty: a row of an image), and the rows whose frame is not a
    whole number >= 0."""
    if "frame" not in table.column_names:
        return np.full(table.num_rows, -1, np.int64), []
    frames, bad = np.full(table.num_rows, -1, np.int64), []
    for i, value in enumerate(table["frame"].to_pylist()):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = float(value)
            if number < 0 or number != int(number):
                raise ValueError
            frames[i] = int(number)
        except (TypeError, ValueError, OverflowError):
            bad.append(i)
    return frames, bad


def read_boxes_table(uri: str, images: pa.Table, label_space: str = "coco80", videos: pa.Table | None = None
                     ) -> tuple[list[ImageDetections], dict[int, dict[int, ImageDetections]],
                                list[tuple[str, str, str]], dict]:
    """Reads a Parquet / CSV detections table for images and for the frames of videos.

    A row per box: the key ``image_id``, ``file_name`` or ``image`` (a file name: found as given, else by its
    last path part); ``box`` (4 numbers, or text ``"[x1, y1, x2, y2]"`` in a CSV) or ``x1, y1, x2, y2``;
    ``label`` (integers of ``label_space``) or ``category`` (COCO names); ``score``; and, for a video, ``frame``:
    the 0-based index of the decoded frame (empty on the rows of images).

    Args:
        images: image_id, file_name of the images.
        videos: image_id, file_name of the videos (None: no video in the run).

    Returns:
        (detections of every image (none: empty), video id -> frame -> detections of the frames that have
        rows, reject rows (source, "row i", reason) of the rows that match nothing or are unusable,
        metadata counts).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, a label outside the label space, a category that is not a COCO class.
    """
    table = _load_table(uri)
    cols = set(table.column_names)
    key = next((k for k in ("image_id", "file_name", "image") if k in cols), None)
    has_box = "box" in cols or {"x1", "y1", "x2", "y2"} <= cols
    missing = [c for c, ok in (("image_id, file_name or image", key), ("box or x1, y1, x2, y2", has_box),
                               ("label or category", cols & {"label", "category"}), ("score", "score" in cols))
               if not ok]
    if missing:
        raise ValueError(f"{uri}: missing column(s) {missing}; has {sorted(cols)}")
    if "box" in cols:
        boxes, bad_box = _box_values(table["box"])
    else:
        boxes = np.stack([table[c].to_numpy().astype(np.float64) for c in ("x1", "y1", "x2", "y2")], 1)
        bad_box = []
    labels = _labels(table, uri, label_space)
    scores = table["score"].to_numpy().astype(np.float64)
    frames, bad_frame = _frames(table)
    videos = videos if videos is not None else pa.table({"image_id": pa.array([], pa.int64()),
                                                        "file_name": pa.array([], pa.string())})
    is_video = set(videos["image_id"].to_pylist())
    keys = table[key].to_pylist()
    if key == "image_id":
        known = set(images["image_id"].to_pylist()) | is_video
        ids = np.array([k if k in known else -1 for k in keys], dtype=np.int64)
    else:
        lookup = dict(zip(images["file_name"].to_pylist() + videos["file_name"].to_pylist(),
                          images["image_id"].to_pylist() + videos["image_id"].to_pylist()))
        ids = np.array([lookup.get(k, -1 if name_problem(k) else lookup.get(PurePosixPath(str(k)).name, -1))
                        for k in keys], dtype=np.int64)
    why: dict[int, str] = {}
    for i in np.flatnonzero(ids < 0).tolist():
        why[i] = ((key != "image_id" and name_problem(keys[i], "the image list"))
                  or f"{key} {keys[i]!r} is not {'an image or video' if len(is_video) else 'an image'} of the image list")
    for i in bad_box:
        why.setdefault(i, f"box {table['box'][i].as_py()!r} is not [x1, y1, x2, y2]")
    for i in bad_frame:
        why.setdefault(i, f"frame {table['frame'][i].as_py()!r} is not a frame index (a whole number >= 0)")
    for i in range(len(ids)):
        if i in why:
            continue
        if ids[i] in is_video and frames[i] < 0:
            why[i] = f"{keys[i]!r} is a video: its rows need a frame (0-based index of the decoded frame)"
        elif ids[i] not in is_video and frames[i] >= 0:
            why[i] = f"frame {frames[i]} given for {keys[i]!r}, which is an image, not a video"
    rejects = [(uri, f"row {i}", reason) for i, reason in sorted(why.items())]
    ids = np.where(np.isin(np.arange(len(ids)), list(why)), -1, ids)
    order = np.lexsort((frames, ids))  # by id, then frame: each image's and each frame's rows are one run

    def rows_of(image_id: int) -> np.ndarray:
        return order[np.searchsorted(ids[order], image_id):np.searchsorted(ids[order], image_id, "right")]

    def detections(image_id: int, rows: np.ndarray) -> ImageDetections:
        return ImageDetections(int(image_id), boxes[rows], labels[rows], scores[rows])

    dets = [detections(i, rows_of(i)) for i in images["image_id"].to_pylist()]
    by_frame: dict[int, dict[int, ImageDetections]] = {}
    for video_id in sorted(is_video):
        mine = rows_of(video_id)
        starts = np.flatnonzero(np.r_[True, np.diff(frames[mine]) != 0]) if len(mine) else np.zeros(0, np.int64)
        by_frame[video_id] = {int(frames[mine[a]]): detections(video_id, mine[a:b])
                              for a, b in zip(starts, np.r_[starts[1:], len(mine)])}
    return dets, by_frame, rejects, {"rows": table.num_rows}


def read_table(uri: str, images: pa.Table, label_space: str = "coco80"
               ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Reads a Parquet / CSV detections table of images (:func:`read_boxes_table` without videos)."""
    dets, _, rejects, meta = read_boxes_table(uri, images, label_space)
    return dets, rejects, meta


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

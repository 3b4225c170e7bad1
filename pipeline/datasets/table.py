"""The ``table`` adapter: a user's own dataset as images plus small tables (format: docs/datasets.md).

Files, relative to ``prepare.root`` (CSV with a header row, or JSON Lines, chosen by the extension):

- classes (``classes.csv``): one row per class, in class-id order. ``name`` (required, unique) and
  optionally ``verb``, ``verb_ing``, ``object`` (prompt fields), ``prompt`` (a free-text prompt used as
  is), ``category`` (a group for plots), ``coco_object`` (the COCO object whose boxes can pair with a
  person for this class; when absent, ``object`` is used if it names a COCO class), ``rare`` (true/false:
  the class is in the rare split of HOI detection).
- labels (``labels.csv``): ``image`` (file name under the images folder), ``split`` (train | val | test)
  and the positive class names: ``label`` (one name; a CSV lists an image once per label) and / or
  ``labels`` (a JSON list, or ``;``-separated names in a CSV). An image listed with no label has no
  positive. Every class not listed for an image is a negative of that image (complete labels). In
  ``single`` label mode an image must have exactly one label, else it is rejected.
- pairs (optional, ``prepare.table.pairs``): human-object boxes for HOI detection evaluation: ``image``,
  ``label``, and the boxes as ``human_box`` / ``object_box`` ([x1, y1, x2, y2] JSON lists) or the CSV
  columns ``hx1, hy1, hx2, hy2, ox1, oy1, ox2, oy2``; continuous pixel coordinates, 0-based.

Without a ``val`` split, ``prepare.val_fraction`` of the train images is held out for validation.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.datasets.build import LABEL_MODES, Candidate, DatasetInput, Reject, SplitInput
from pipeline.datasets.files import AnnotationError, read_records
from pipeline.storage.names import path_inside
from pipeline.classes.coco import coco80_label

from pipeline.choices import SPLITS
CLASS_FIELDS = ("verb", "verb_ing", "object", "prompt", "category", "coco_object", "rare")
BOX_COLUMNS = ("hx1", "hy1", "hx2", "hy2", "ox1", "oy1", "ox2", "oy2")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass
class TableFiles:
    """Where the files are; paths are relative to ``root`` (a local path or fsspec URI)."""
    root: str
    classes: str = "classes.csv"
    labels: str = "labels.csv"
    pairs: str = ""              # "" = no boxes
    images: str = "images"
    label_mode: str = "multi"    # multi | single


def _flag(value, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise AnnotationError(f"{where}: rare = {value!r}; expected true or false")


def read_classes(uri: str) -> pa.Table:
    """The classes file as the static columns of the classes table (see the module docstring)."""
    records = read_records(uri, required=("name",), optional=CLASS_FIELDS)
    if not records:
        raise AnnotationError(f"{uri}: no classes")
    seen: dict[str, int] = {}
    coco = []
    for r in records:
        name = str(r["name"])
        if name in seen:
            raise AnnotationError(f"{uri} row {r['_row']}: class name {name!r} repeats row {seen[name]}")
        seen[name] = r["_row"]
        given = r.get("coco_object")
        label = coco80_label(given or r.get("object") or "")
        if given and label is None:
            raise AnnotationError(f"{uri} row {r['_row']}: coco_object {given!r} is not a COCO class name")
        coco.append(label)
    rare = [_flag(r.get("rare"), f"{uri} row {r['_row']}") for r in records]
    cols = {"hoi": np.arange(len(records)), "name": [str(r["name"]) for r in records]}
    for f in ("verb", "verb_ing", "object", "prompt", "category"):
        cols[f] = pa.array([None if r.get(f) is None else str(r[f]) for r in records], pa.string())
    cols["coco80"] = pa.array(coco, pa.int16())
    table = pa.table(cols)
    if any(v is not None for v in rare):
        if any(v is None for v in rare):
            raise AnnotationError(f"{uri}: rare is given for some classes but not for all")
        table = table.append_column("rare_given", pa.array(rare, pa.bool_()))
    return table


def _names(record: dict, uri: str) -> list[str]:
    out = []
    if record.get("label") is not None:
        out.append(str(record["label"]))
    labels = record.get("labels")
    if isinstance(labels, str):
        out += [x.strip() for x in labels.split(";") if x.strip()]
    elif isinstance(labels, list):
        out += [str(x) for x in labels]
    elif labels is not None:
        raise AnnotationError(f"{uri} row {record['_row']}: labels = {labels!r}; expected a list of class names")
    return out


def _box(record: dict, field: str, columns: tuple[str, ...], uri: str) -> list[float]:
    value = record.get(field)
    if value is None and all(record.get(c) is not None for c in columns):
        value = [record[c] for c in columns]
    if isinstance(value, str):
        value = json.loads(value)
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4:
        raise AnnotationError(f"{uri} row {record['_row']}: {field} = {value!r}; expected [x1, y1, x2, y2] "
                              f"(or the columns {', '.join(columns)})")
    return box


def read_table_dataset(files: TableFiles) -> DatasetInput:
    """Reads the classes, labels and (optional) pairs files into candidates per split.

    Raises:
        AnnotationError: a malformed file, an unknown split, an image given two splits, a pair of an
            unknown class.
    """
    if files.label_mode not in LABEL_MODES:
        raise ValueError(f"prepare.table.label_mode {files.label_mode!r}: expected one of {LABEL_MODES}")
    classes_uri = storage.join(files.root, files.classes)
    labels_uri = storage.join(files.root, files.labels)
    classes = read_classes(classes_uri)
    index = {n: i for i, n in enumerate(classes.column("name").to_pylist())}
    images: OrderedDict[str, dict] = OrderedDict()
    for r in read_records(labels_uri, required=("image", "split"), optional=("label", "labels")):
        name, split = str(r["image"]), str(r["split"])
        if split not in SPLITS:
            raise AnnotationError(f"{labels_uri} row {r['_row']}: split {split!r}; expected one of {SPLITS}")
        entry = images.setdefault(name, {"split": split, "labels": [], "row": r["_row"]})
        if entry["split"] != split:
            raise AnnotationError(f"{labels_uri} row {r['_row']}: image {name} has split {split!r}; row "
                                  f"{entry['row']} says {entry['split']!r}")
        entry["labels"] += _names(r, labels_uri)
    pairs: dict[str, list] = {}
    pair_rejects: list[Reject] = []
    pairs_uri = storage.join(files.root, files.pairs) if files.pairs else ""
    if pairs_uri:
        for r in read_records(pairs_uri, required=("image", "label"),
                              optional=("human_box", "object_box", *BOX_COLUMNS)):
            name, label = str(r["image"]), str(r["label"])
            if label not in index:
                raise AnnotationError(f"{pairs_uri} row {r['_row']}: label {label!r} is not a class of {classes_uri}")
            hb, ob = _box(r, "human_box", BOX_COLUMNS[:4], pairs_uri), _box(r, "object_box", BOX_COLUMNS[4:], pairs_uri)
            if name not in images:
                pair_rejects.append(Reject(pairs_uri, f"{name} {label}", "image is not in the labels file",
                                           "unknown", "pair"))
                continue
            pairs.setdefault(name, []).append((index[label], hb, ob))
    C = classes.num_rows
    by_split: dict[str, SplitInput] = {}
    for name, entry in images.items():
        part = by_split.setdefault(entry["split"], SplitInput(entry["split"], []))
        unknown = [x for x in entry["labels"] if x not in index]
        positives = sorted({index[x] for x in entry["labels"] if x in index})
        where = f"{labels_uri} row {entry['row']}"
        uri, problem = path_inside(storage.join(files.root, files.images), name)
        if problem:  # a name that leads out of the images folder is never opened
            part.rejects.append(Reject(labels_uri, name, f"{problem} ({where})", part.split))
        elif unknown:
            part.rejects.append(Reject(labels_uri, name, f"label {unknown[0]!r} is not a class of {files.classes} "
                                                         f"({where})", part.split))
        elif files.label_mode == "single" and len(positives) != 1:
            part.rejects.append(Reject(labels_uri, name, f"single-label dataset: the image has {len(positives)} "
                                                         f"labels ({where})", part.split))
        else:
            listed = set(positives)
            negatives = [c for c in range(C) if c not in listed]
            part.candidates.append(Candidate(name, uri, None, positives,
                                             negatives, [], pairs.get(name, []), pairs_uri))
    splits = [by_split[s] for s in SPLITS if s in by_split]
    if pair_rejects:
        splits[0].rejects += pair_rejects
    rare_given = classes.column("rare_given").to_numpy(zero_copy_only=False) if "rare_given" in classes.column_names \
        else None
    if rare_given is not None:
        classes = classes.drop_columns(["rare_given"])
    notes = {"classes_with_coco_object": int(classes.column("coco80").is_valid().to_numpy(zero_copy_only=False).sum())}
    return DatasetInput("table", splits, classes, files.label_mode,
                        (lambda n_pairs, has_pairs: rare_given) if rare_given is not None else
                        (lambda n_pairs, has_pairs: None), notes)

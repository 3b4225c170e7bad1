"""Readers for HICO-DET box annotations, in both published forms.

* ``instances_{train,test}2015.json`` (pocket / UPT form): ``filenames``, ``size`` ([w, h]),
  ``annotation`` (per image: boxes_h, boxes_o, hoi, object, verb), ``rare``.
* ``anno_bbox.mat`` (the original release): ``bbox_train`` / ``bbox_test`` structs with ``filename``,
  ``size`` and ``hoi`` (id, bboxhuman, bboxobject with x1, x2, y1, y2 fields, connection, invis).

Both store 1-based inclusive pixel boxes; they become continuous 0-based [x1 - 1, y1 - 1, x2, y2] here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import scipy.io

from pipeline import storage
from pipeline.datasets.files import AnnotationError

PAIR_FIELDS = ("hoi", "boxes_h", "boxes_o")


@dataclass
class DetImage:
    file_name: str
    width: int
    height: int
    hois: list[int] = field(default_factory=list)              # 0-based HOI ids
    human_boxes: list[list[float]] = field(default_factory=list)
    object_boxes: list[list[float]] = field(default_factory=list)
    problem: str | None = None   # the entry cannot be read (its pairs are unknown): prepare rejects the image


def _to_continuous(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1 - 1.0, y1 - 1.0, x2, y2]


def read_instances_json(uri: str, num_classes: int = 600) -> tuple[list[DetImage], list[int] | None]:
    """Reads the pocket/UPT ``instances_*.json``; returns (images, rare HOI ids or None).

    An image without pairs has an entry with empty lists (the file lists it in ``empty``). An entry that
    lacks the pair fields altogether (e.g. ``{}``) says nothing about the image's pairs: its image gets a
    ``problem`` and prepare rejects it, instead of taking it as an image without pairs.
    """
    with storage.open_file(uri, "rt") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{uri}: not valid JSON ({e})") from e
    for key in ("annotation", "filenames", "size"):
        if key not in data:
            raise AnnotationError(f"{uri}: missing field {key!r}")
    n = len(data["filenames"])
    if len(data["annotation"]) != n or len(data["size"]) != n:
        raise AnnotationError(f"{uri}: fields 'annotation' ({len(data['annotation'])}), 'filenames' ({n}) "
                              f"and 'size' ({len(data['size'])}) differ in length")
    images = []
    for i, (name, size, ann) in enumerate(zip(data["filenames"], data["size"], data["annotation"])):
        img = DetImage(name, int(size[0]), int(size[1]))
        missing = [k for k in PAIR_FIELDS if k not in ann] if isinstance(ann, dict) else list(PAIR_FIELDS)
        if missing:
            img.problem = (f"annotation entry {i} has no field(s) {missing}: its ground-truth pairs are "
                           "unknown (an image without pairs has empty lists)")
            images.append(img)
            continue
        hois = ann.get("hoi", [])
        bh, bo = ann.get("boxes_h", []), ann.get("boxes_o", [])
        if not len(hois) == len(bh) == len(bo):
            raise AnnotationError(f"{uri}: annotation {i} ({name}): hoi, boxes_h and boxes_o differ in length")
        for h, b1, b2 in zip(hois, bh, bo):
            img.hois.append(int(h))
            img.human_boxes.append(_to_continuous(b1))
            img.object_boxes.append(_to_continuous(b2))
        images.append(img)
    rare = data.get("rare")
    return images, (None if rare is None else [int(r) for r in rare])


def _field(s, name: str, where: str):
    try:
        return getattr(s, name)
    except AttributeError:
        raise AnnotationError(f"{where}: missing field {name!r}") from None


def _as_list(x) -> list:
    return list(np.atleast_1d(np.asarray(x, dtype=object)).reshape(-1)) if x is not None else []


def _mat_box(b, where: str) -> list[float]:
    # anno_bbox.mat orders the fields x1, x2, y1, y2; we return [x1, y1, x2, y2].
    return _to_continuous([_field(b, "x1", where), _field(b, "y1", where),
                           _field(b, "x2", where), _field(b, "y2", where)])


def read_anno_bbox_mat(uri: str, split: str) -> list[DetImage]:
    """Reads one split ("train" or "test") of the original ``anno_bbox.mat``.

    Each HOI entry pairs human boxes and object boxes through ``connection`` ([k, 2], 1-based);
    entries marked ``invis`` (no visible boxes) have no pairs.
    """
    key = f"bbox_{split}"
    with storage.open_file(uri) as f:
        try:
            mat = scipy.io.loadmat(f, squeeze_me=True, struct_as_record=False)
        except Exception as e:
            raise AnnotationError(f"{uri}: not a readable MATLAB file ({e})") from e
    if key not in mat:
        raise AnnotationError(f"{uri}: missing field {key!r}")
    images = []
    for i, entry in enumerate(_as_list(mat[key])):
        where = f"{uri}: {key}[{i}]"
        size = _field(entry, "size", where)
        img = DetImage(str(_field(entry, "filename", where)), int(_field(size, "width", where)),
                       int(_field(size, "height", where)))
        for j, hoi in enumerate(_as_list(_field(entry, "hoi", where))):
            w = f"{where}.hoi[{j}]"
            if int(np.asarray(getattr(hoi, "invis", 0)).reshape(-1)[0] if np.size(getattr(hoi, "invis", 0)) else 0):
                continue
            hid = int(_field(hoi, "id", w)) - 1
            humans = [_mat_box(b, w) for b in _as_list(_field(hoi, "bboxhuman", w))]
            objects = [_mat_box(b, w) for b in _as_list(_field(hoi, "bboxobject", w))]
            conn = np.asarray(_field(hoi, "connection", w), dtype=np.int64).reshape(-1, 2)
            for a, b in conn:
                if not (1 <= a <= len(humans) and 1 <= b <= len(objects)):
                    raise AnnotationError(f"{w}: connection ({a}, {b}) refers to a missing box "
                                          f"({len(humans)} human, {len(objects)} object boxes)")
                img.hois.append(hid)
                img.human_boxes.append(humans[a - 1])
                img.object_boxes.append(objects[b - 1])
        images.append(img)
    return images

"""DETR-family result lists (QPIC, CDN, GEN-VLKT, HOICLIP): per image, boxes and ``hoi_prediction`` triplets.

The structure their HICO-DET evaluators (``datasets/hico_eval*.py``) build and that forks save as JSON or
pickle, one entry per test image::

    [{"file_name": "HICO_test2015_00000001.jpg",            # or "filename" / "image"; optional
      "predictions": [{"bbox": [x1, y1, x2, y2], "category_id": 0}, ...],
      "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": 36, "score": 0.71}, ...]},
     ...]

also as ``{"preds": [...]}`` or ``{file name: entry}``. Without file names, entry ``i`` is test image ``i``
(the list must then hold every test image, in the annotation's order).

* ``hoi_labels="verb"`` (QPIC, CDN): ``hoi_prediction.category_id`` is the 0-based verb (HICO's 117 verbs,
  ``hico_list_vb.txt`` order) and the object comes from ``predictions[object_id].category_id``;
  ``hoi_labels="hoi"`` (GEN-VLKT, HOICLIP triplet evaluators): it is the 0-based HOI id (HICO's 600 order).
  ``auto``: "hoi" when the boxes carry no ``category_id``, else "verb".
* object labels: ``coco80`` (0-based contiguous COCO order, person = 0: QPIC's ``valid_obj_ids`` index),
  ``coco91`` (COCO category ids, person = 1) or ``hico80`` (HICO's alphabetical objects, 0-based).
* boxes: the annotation's own numbers (these models regress the 1-based annotation boxes, and their
  evaluators add 1 pixel to widths as the official code does).

A verb-object pair that is not one of the 600 HOIs, a subject or object index outside the image's boxes,
or an image that is not a test image becomes a reject row. Pickles are read by a restricted unpickler that
builds only plain containers, numbers, strings and NumPy arrays; a pickle of torch tensors is refused
(convert with ``tensor.tolist()`` or save JSON).
"""
from __future__ import annotations

import io
import math
import json
import pickle

import numpy as np

from pipeline import storage
from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary
from pipeline.results.records import HOI_NO_ID, HOI_OUT_OF_RANGE, NUM_HOIS, Detections, check_rows
from pipeline.results.testset import HicoDetTestSet

from pipeline.choices import HOI_LABELS, LABEL_SPACES as OBJECT_LABELS
NAME_KEYS = ("file_name", "filename", "image", "img_name")
# COCO's 80 category ids (1..90 with gaps), in the contiguous COCO-80 order.
COCO91_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
              33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
              60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
SAFE_GLOBALS = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes",
                              "bytearray", "bool", "complex", "slice", "range")
} | {("collections", "OrderedDict"), ("collections", "defaultdict")} | {
    (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only containers, numbers, strings and NumPy arrays: a result file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module.split(".")[0] == "torch":
            raise pickle.UnpicklingError(f"the pickle holds torch objects ({module}.{name}); defr evaluate does not "
                                         "load torch: save the results with tensors converted (tensor.tolist() or "
                                         ".numpy()) or as JSON")
        raise pickle.UnpicklingError(f"the pickle refers to {module}.{name}; only plain containers, numbers, strings "
                                     "and NumPy arrays are loaded (restricted unpickler)")


def load_entries(path: str):
    """The file's content: JSON, or a pickle through :class:`RestrictedUnpickler`."""
    with storage.open_file(path, "rb") as f:
        data = f.read()
    if path.endswith((".pkl", ".pickle")):
        try:
            return RestrictedUnpickler(io.BytesIO(data)).load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: {e}") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def entries_of(content, path: str) -> list[tuple[str | None, dict]]:
    """[(file name or None, entry)] in file order."""
    if isinstance(content, dict) and "preds" in content:
        content = content["preds"]
    if isinstance(content, dict):
        if "hoi_prediction" in content:
            raise ValueError(f"{path}: one image's entry; expected a list of entries or {{file name: entry}}")
        return [(str(k), v) for k, v in content.items()]
    if not isinstance(content, (list, tuple)):
        raise ValueError(f"{path}: expected a list of per-image entries with 'predictions' and 'hoi_prediction', "
                         f"got {type(content).__name__}")
    return [(next((str(e[k]) for k in NAME_KEYS if isinstance(e, dict) and k in e), None), e) for e in content]


def read_detr_list(path: str, test: HicoDetTestSet, hoi_labels: str = "auto", object_labels: str = "coco80",
                   vocab: Vocabulary | None = None, content=None) -> Detections:
    """Reads a DETR-family result list (JSON, or pickle of plain containers and arrays).

    Raises:
        ValueError: an unreadable file, an unknown structure or option, or entries without file names whose
            count is not the number of test images.
    """
    vocab = vocab or hico_vocabulary()
    if hoi_labels not in HOI_LABELS or object_labels not in OBJECT_LABELS:
        raise ValueError(f"hoi_labels {hoi_labels!r} / object_labels {object_labels!r}: expected one of {HOI_LABELS} "
                         f"/ {OBJECT_LABELS}")
    entries = entries_of(load_entries(path) if content is None else content, path)
    named = [n is not None for n, _ in entries]
    if not all(named):
        if any(named):
            raise ValueError(f"{path}: entry {named.index(False)} has no file name ({'/'.join(NAME_KEYS)}) but "
                             "others do")
        if len(entries) != test.num_images:
            raise ValueError(f"{path}: {len(entries)} entries without file names; entry i is test image i only when "
                             f"there is one per test image ({test.num_images})")
        image_of_entry = np.arange(len(entries))
    else:
        image_of_entry = test.image_index([n for n, _ in entries])
    if hoi_labels == "auto":
        first = next((e["predictions"][0] for _, e in entries if isinstance(e, dict) and e.get("predictions")), {})
        hoi_labels = "verb" if isinstance(first, dict) and "category_id" in first else "hoi"
    to_object = _object_map(object_labels, vocab)
    lut = np.full((len(vocab.verbs) + 1, len(vocab.objects) + 1), HOI_NO_ID, dtype=np.int64)
    lut[vocab.hoi_verb, vocab.hoi_object] = np.arange(len(vocab))   # last row / column: unknown verb / object
    parts, where, rejects = [], [], []
    for e, (name, entry) in enumerate(entries):
        label = name if name is not None else test.file_names[e]
        if not isinstance(entry, dict):
            rejects.append({"source": path, "item": f"entry {e} ({label})", "reason": "entry is not a mapping"})
            continue
        preds = list(entry.get("predictions") or [])
        hois = [h if isinstance(h, dict) else {} for h in entry.get("hoi_prediction") or []]
        if not hois:
            continue
        # Per image: its boxes once, then the triplets as arrays.
        boxes = np.array([_box(p) for p in preds], dtype=np.float64).reshape(-1, 4)
        sub = np.array([_int(h.get("subject_id"), -1) for h in hois], dtype=np.int64)
        obj = np.array([_int(h.get("object_id"), -1) for h in hois], dtype=np.int64)
        cat = np.array([_int(h.get("category_id"), -1) for h in hois], dtype=np.int64)
        score = np.array([_num(h.get("score")) for h in hois], dtype=np.float64)
        ok = (sub >= 0) & (sub < len(preds)) & (obj >= 0) & (obj < len(preds))
        for k in np.flatnonzero(~ok).tolist():
            rejects.append({"source": path, "item": f"entry {e} ({label}) hoi_prediction {k}",
                            "reason": f"subject_id / object_id ({sub[k]}, {obj[k]}) outside the image's {len(preds)} "
                                      "boxes"})
        kept = np.flatnonzero(ok)
        if hoi_labels == "hoi":
            hoi = np.where((cat >= 0) & (cat < NUM_HOIS), cat, HOI_OUT_OF_RANGE)[kept]
        else:
            labels = np.array([to_object(_int(p.get("category_id"), None) if isinstance(p, dict) else None, -1)
                               for p in preds], dtype=np.int64)
            verb = np.where((cat >= 0) & (cat < len(vocab.verbs)), cat, len(vocab.verbs))[kept]
            o = labels[obj[kept]]
            hoi = lut[verb, np.where(o >= 0, o, len(vocab.objects))]
        parts.append((np.full(len(kept), image_of_entry[e]), hoi, boxes[sub[kept]], boxes[obj[kept]], score[kept]))
        where += [(e, int(k), label) for k in kept]
    if parts:
        image, hoi, human, objects, score = (np.concatenate(c) for c in zip(*parts))
    else:
        image, hoi, human, objects, score = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)),
                                             np.zeros((0, 4)), np.zeros(0))
    human[:, :2] -= 1.0        # 1-based annotation convention -> continuous
    objects[:, :2] -= 1.0

    def describe(bad: np.ndarray) -> list[str]:
        return [f"entry {where[r][0]} ({where[r][2]}) hoi_prediction {where[r][1]}" for r in bad]

    det = check_rows(path, image, hoi, human, objects, score, describe, "detr", extra_rejects=rejects,
                     extra_total=len(rejects))
    det.notes.append(f"{len(entries)} image entries; hoi_prediction category_id read as {hoi_labels}"
                     + (f", object labels {object_labels}" if hoi_labels == "verb" else ""))
    return det


def _object_map(kind: str, vocab: Vocabulary):
    """label -> HICO object index (``get(label, default)``)."""
    if kind == "coco80":
        table = {i: int(o) for i, o in enumerate(vocab.coco80_to_object)}
    elif kind == "coco91":
        table = {cid: int(vocab.coco80_to_object[i]) for i, cid in enumerate(COCO91_IDS)}
    else:
        table = {i: i for i in range(len(vocab.objects))}
    return table.get


def _int(v, default=None):
    if type(v) is int:          # the common case, fast
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return int(f) if math.isfinite(f) and f == int(f) else default


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _box(pred) -> list[float]:
    box = pred.get("bbox") if isinstance(pred, dict) else None
    try:
        if not isinstance(box, (list, tuple)):
            box = np.asarray(box, dtype=np.float64).reshape(-1).tolist()
        values = [float(x) for x in box]
    except (TypeError, ValueError):
        return [math.nan] * 4
    return values if len(values) == 4 else [math.nan] * 4

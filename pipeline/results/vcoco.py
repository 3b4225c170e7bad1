"""V-COCO results of any model, for ``defr evaluate --benchmark vcoco``: the official list, or a plain table.

* **list** (``.pkl`` / ``.pickle`` / ``.json``): the official format of ``vsrl_eval.py`` (s-gupta/v-coco),
  one dict per detected person, as UPT, PViC, GEN-VLKT... write it::

      [{"image_id": 42,                          # COCO image id
        "person_box": [x1, y1, x2, y2],
        "hold_agent": 0.83,                       # <action>_agent: the action's score for the person
        "hold_obj": [x1, y1, x2, y2, 0.71],       # <action>_<role>: the role's box and its own score
        ...}, ...]

  Boxes as lists or NumPy arrays; a NaN score means "not predicted"; a role box of zeros or NaNs means "no
  role object" (scenario 1). A key that is absent counts as not predicted (the official code would stop:
  some peers write one dict per (person, action)). Pickles are read by the restricted unpickler of
  :mod:`pipeline.results.detr_lists` (plain containers, numbers, strings, NumPy arrays: a file cannot run
  code).
* **table** (``.csv`` / ``.jsonl`` / ``.parquet``): one row per person, action and role: ``image_id``,
  ``person_box`` (or ``px1, py1, px2, py2``), ``action``, ``role`` (``agent`` or the role's name), ``score``,
  ``role_box`` (or ``rx1, ry1, rx2, ry2``; empty for an agent row or "no role object") and optionally
  ``person`` (an id that tells the people of an image apart; without it, rows with the same image and
  person box are one person). People are numbered in order of first appearance.

Boxes are taken as written, in the annotation's convention (inclusive pixels, as the ground truth's
``x1 + w - 1``). Rows are (person, action, key) values; a value that is not a number (agent) or five
numbers (role), a person whose image is not one of the annotation's or whose box is not four finite
numbers, become reject rows (source, item, reason) instead of failing the file.
"""
from __future__ import annotations

import gc
import math
from collections import Counter
from itertools import chain
from operator import itemgetter
from dataclasses import dataclass, field

import numpy as np

from pipeline import storage

LIST_SUFFIXES = (".pkl", ".pickle", ".json")
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")
FORMATS = ("auto", "list", "table")


@dataclass
class VcocoResults:
    """Detected people (entries, file order) and their (action, key) rows, checked; see
    :func:`pipeline.metrics.vcoco.vcoco_eval` for the arrays."""

    entry_image: np.ndarray
    entry_box: np.ndarray
    row_entry: np.ndarray
    row_action: np.ndarray
    row_slot: np.ndarray
    row_score: np.ndarray
    row_box: np.ndarray
    rejects: list[dict] = field(default_factory=list)
    total: int = 0
    format: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.row_entry)

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in ("entry_image", "entry_box", "row_entry", "row_action", "row_slot",
                                              "row_score", "row_box")}


def read_vcoco_results(path: str, image_ids: np.ndarray, actions: list[str], roles: list[list[str]],
                       fmt: str = "auto") -> VcocoResults:
    """Reads ``path`` (see the module docstring) against the evaluated images and the actions' roles.

    Args:
        image_ids: the evaluated COCO image ids, ascending; ``actions``, ``roles``: the annotation's.
        fmt: ``auto`` (by extension), ``list`` or ``table``.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable file, an unknown structure (named).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} for V-COCO results: expected auto, list (the official .pkl / .json) or "
                         "table")
    if not storage.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    lower = path.lower()
    if fmt == "auto":
        if lower.endswith(LIST_SUFFIXES):
            fmt = "list"
        elif lower.endswith(TABLE_SUFFIXES):
            fmt = "table"
        else:
            raise ValueError(f"{path}: cannot tell the format: expected the official .pkl / .json list or a "
                             ".csv / .jsonl / .parquet table (or pass --format)")
    keys = {f"{a}_{r}": (i, j) for i, (a, rs) in enumerate(zip(actions, roles)) for j, r in enumerate(rs)}
    image_ids = np.asarray(image_ids, np.int64)
    # Millions of small objects: Python's cycle collector would walk them again and again as they are
    # built (3x the time of a 100,000-person pickle); they hold no cycles, so it waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if fmt == "list":
            from pipeline.results.detr_lists import load_entries

            return _from_list(path, load_entries(path), image_ids, keys)
        return _from_table(path, image_ids, keys)
    finally:
        if collecting:
            gc.enable()


def _image_index(values: list, image_ids: np.ndarray) -> np.ndarray:
    """Index of each image id among ``image_ids``; -1 not evaluated, -2 not an integer."""
    ids = np.array([_integer(v) for v in values], dtype=np.float64)
    out = np.full(len(ids), -2, dtype=np.int64)
    ok = np.isfinite(ids)
    ints = ids[ok].astype(np.int64)
    pos = np.clip(np.searchsorted(image_ids, ints), 0, max(len(image_ids) - 1, 0))
    out[ok] = np.where(image_ids[pos] == ints, pos, -1) if len(image_ids) else -1
    return out


def _integer(v) -> float:
    if type(v) is int or isinstance(v, np.integer):     # the common cases, fast
        return float(v)
    if isinstance(v, (bool, str, bytes)) or v is None:
        return math.nan
    try:
        f = float(np.asarray(v).reshape(-1)[0]) if np.size(v) == 1 else math.nan
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) and f == int(f) else math.nan


def _numbers(values: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    """([n, width] float64, [n] bool ok): each value as ``width`` numbers (a scalar for width 1)."""
    n = len(values)
    try:
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape == ((n,) if width == 1 else (n, width)):
            return arr.reshape(n, width), np.ones(n, bool)
    except (TypeError, ValueError):
        pass
    out = np.full((n, width), np.nan)
    ok = np.zeros(n, bool)
    for k, v in enumerate(values):
        try:
            a = np.asarray(v, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            continue
        if a.size == width and not isinstance(v, (str, bytes)):
            out[k], ok[k] = a, True
    return out, ok


def _check_entries(image_index: np.ndarray, boxes: np.ndarray, box_ok: np.ndarray) -> list[str | None]:
    """Why each detected person cannot be scored (None: it can)."""
    reasons: list[str | None] = [None] * len(image_index)
    with np.errstate(invalid="ignore"):
        finite = box_ok & np.isfinite(boxes).all(axis=1)
    for e in np.flatnonzero((image_index < 0) | ~finite).tolist():
        reasons[e] = ("image_id is not an integer" if image_index[e] == -2 else
                      "image is not one of the annotation file's images" if image_index[e] == -1 else
                      "person_box is not 4 finite numbers")
    return reasons


def _from_list(path: str, content, image_ids: np.ndarray, keys: dict) -> VcocoResults:
    if isinstance(content, dict):
        raise ValueError(f"{path}: a mapping; expected the official list of per-person dicts "
                         "({'image_id', 'person_box', '<action>_agent', '<action>_<role>'})")
    if not isinstance(content, (list, tuple)):
        raise ValueError(f"{path}: expected the official list of per-person dicts, got {type(content).__name__}")
    is_dict = [isinstance(e, dict) for e in content]
    entries = [e if ok else {} for e, ok in zip(content, is_dict)]
    counts = Counter(chain.from_iterable(map(dict.keys, entries)))
    # Millions of values: one C call per entry takes all its keys at once (a default where one is missing),
    # then one column per key, never one Python step per value.
    names = ["image_id", "person_box", *keys]
    defaults = [None, None] + [math.nan if slot == 0 else [math.nan] * 5 for _, slot in keys.values()]
    every = itemgetter(*names)

    def take(e: dict) -> tuple:
        try:
            return every(e)
        except KeyError:
            return tuple(e.get(k, d) for k, d in zip(names, defaults))

    columns = list(zip(*map(take, entries))) if entries else [()] * len(names)
    images = list(columns[0])
    box, box_ok = _numbers(list(columns[1]), 4)
    image = _image_index(images, image_ids)
    entry_reason = _check_entries(image, box, box_ok)
    for e in np.flatnonzero(~np.array(is_dict, bool)).tolist():
        entry_reason[e] = "entry is not a mapping"
    bad_entry = np.array([r is not None for r in entry_reason], dtype=bool)
    parts, rejects, total = [], [], 0
    for column, (key, (a, slot)) in zip(columns[2:], keys.items()):
        if not counts.get(key):
            continue
        total += counts[key]
        values, ok = _numbers(list(column), 1 if slot == 0 else 5)
        for e in np.flatnonzero(~ok | bad_entry).tolist():
            if key in entries[e]:
                why = entry_reason[e] or ("value is not a number" if slot == 0 else
                                          "value is not [x1, y1, x2, y2, score] (5 numbers)")
                rejects.append({"source": path, "item": f"entry {e} (image_id {images[e]!r}) {key}", "reason": why})
        rows = np.flatnonzero(ok & ~bad_entry & ~np.isnan(values[:, -1]))
        parts.append((rows, np.full(len(rows), a), np.full(len(rows), slot), values[rows, -1],
                      values[rows, :4] if slot else np.full((len(rows), 4), np.nan)))
    for e in np.flatnonzero(bad_entry).tolist():
        if not any(k in keys for k in entries[e]):      # an unusable entry with no value is still a row
            total += 1
            rejects.append({"source": path, "item": f"entry {e}", "reason": entry_reason[e]})
    if parts:
        row_entry, row_action, row_slot, score, row_box = (np.concatenate(c) for c in zip(*parts))
    else:
        row_entry = row_action = row_slot = np.zeros(0, np.int64)
        score, row_box = np.zeros(0), np.zeros((0, 4))
    out = _assemble(path, image, box, bad_entry, row_entry.astype(np.int64), row_action.astype(np.int64),
                    row_slot.astype(np.int64), score, row_box, rejects, total, "list")
    in_bad = sum(sum(k in keys for k in entries[e]) for e in np.flatnonzero(bad_entry).tolist())
    absent = int((~bad_entry).sum()) * len(keys) - (sum(counts.get(k, 0) for k in keys) - in_bad)
    out.notes.insert(0, f"{len(content)} person entries (official list)")
    if absent > 0:
        out.notes.append(f"{absent} (person, key) values absent: read as not predicted")
    unknown = {k: c for k, c in counts.items() if k not in keys and k not in ("image_id", "person_box")}
    if unknown:
        out.notes.append(f"keys that name no action-role of the annotation file, ignored: "
                         f"{dict(Counter(unknown).most_common(5))}")
    return out


def _assemble(path, image, box, bad_entry, row_entry, row_action, row_slot, score, row_box, rejects, total,
              fmt) -> VcocoResults:
    """Keeps the good entries (renumbered, file order) and their rows."""
    good = np.flatnonzero(~bad_entry)
    new = np.full(len(bad_entry), -1, np.int64)
    new[good] = np.arange(len(good))
    return VcocoResults(image[good], box[good].astype(np.float32), new[row_entry], row_action, row_slot,
                        np.asarray(score, np.float32), np.asarray(row_box, np.float32), rejects, total, fmt)


def _from_table(path: str, image_ids: np.ndarray, keys: dict) -> VcocoResults:
    from pipeline.results.own_tables import parse_boxes, read_table_file

    table = read_table_file(path)
    cols = set(table.column_names)
    missing = [c for c in ("image_id", "action", "role", "score") if c not in cols]
    if "person_box" not in cols and not {"px1", "py1", "px2", "py2"} <= cols:
        missing.append("person_box (or px1, py1, px2, py2)")
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; it has {table.column_names} (one row per person, "
                         "action and role: image_id, person_box, action, role, score, role_box)")

    def boxes(name: str, prefix: str) -> np.ndarray:
        if name in cols:
            return parse_boxes(table.column(name))
        parts = [f"{prefix}{c}" for c in ("x1", "y1", "x2", "y2")]
        if set(parts) <= cols:
            return np.stack([_column(table, c) for c in parts], axis=1)
        return np.full((table.num_rows, 4), np.nan)

    n = table.num_rows
    images = table.column("image_id").to_pylist()
    person_box = boxes("person_box", "p")
    role_box = boxes("role_box", "r")
    score = _column(table, "score")
    action = [str(x) for x in table.column("action").to_pylist()]
    role = [str(x) for x in table.column("role").to_pylist()]
    person = table.column("person").to_pylist() if "person" in cols else None
    image = _image_index(images, image_ids)
    first_row = 2 if path.endswith(".csv") else 1
    reasons = _check_entries(image, person_box, np.ones(n, bool))
    rejects: list[dict] = []
    slot_of = [keys.get(f"{a}_{r}") for a, r in zip(action, role)]
    entry_of: dict = {}
    row_entry, row_action, row_slot, seen = [], [], [], set()
    kept = []
    for k in range(n):
        why = reasons[k]
        if why is None and slot_of[k] is None:
            why = f"action {action[k]!r} with role {role[k]!r} is not an action-role of the annotation file"
        if why is None:
            ident = (int(image[k]), person[k] if person is not None else tuple(person_box[k].tolist()))
            e = entry_of.setdefault(ident, len(entry_of))
            if (e, slot_of[k]) in seen:
                why = "this person's value for the action and role is given twice"
            else:
                seen.add((e, slot_of[k]))
                row_entry.append(e), row_action.append(slot_of[k][0]), row_slot.append(slot_of[k][1])
                kept.append(k)
                continue
        rejects.append({"source": path, "item": f"row {k + first_row} (image_id {images[k]!r}, {action[k]} "
                                                f"{role[k]})", "reason": why})
    kept = np.array(kept, dtype=np.int64)
    row_entry = np.array(row_entry, dtype=np.int64)
    first = np.full(len(entry_of), -1, np.int64)
    first[row_entry[::-1]] = kept[::-1]            # each person's first row
    out = _assemble(path, image[first] if len(first) else np.zeros(0, np.int64), person_box[first].reshape(-1, 4),
                    np.zeros(len(first), bool), row_entry, np.array(row_action, np.int64), np.array(row_slot, np.int64),
                    score[kept] if len(kept) else np.zeros(0), role_box[kept].reshape(-1, 4), rejects, n, "table")
    out.notes.insert(0, f"{len(first)} people in {n} rows (table)")
    return out


def _column(table, name: str) -> np.ndarray:
    """A numeric (or numeric text) column as float64, NaN for nulls and for text that is not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.array([_float(v) for v in col.to_pylist()], dtype=np.float64)
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan)
    return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False))


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def official_list(table, coco_ids: np.ndarray, class_names: list[str], actions: list[str],
                  roles: list[list[str]]) -> list[dict]:
    """The official results list of scored (person, object, class) rows (``hoi_detections``; classes named
    by the key they score: ``<action>_<role>``, ``<action>_agent``, :mod:`pipeline.classes.vcoco_vocab`).

    A detected person is a distinct (image, person box). Its ``<action>_<role>`` is the object box and score
    of its best pair for that class; its ``<action>_agent`` the best score of any class of the action over its
    pairs; NaN where it has none (not predicted). Boxes go from the pipeline's continuous ``[x1, y1, x2, y2]``
    to the annotation's inclusive pixels (``x2 - 1``, ``y2 - 1``), the convention of the ground truth's
    ``x1 + w - 1``.

    Args:
        table: columns image_id, hoi, human_box, object_box, score.
        coco_ids: [N] the COCO image id of each ``image_id`` (index = the table's image_id).
        class_names: the model's classes (``hoi`` -> name); ``actions``, ``roles``: the annotation's.

    Raises:
        ValueError: a class that is not a key of the annotation's actions (not a V-COCO model).
    """
    keys = [f"{a}_{r}" for a, rs in zip(actions, roles) for r in rs]
    slot = {f"{a}_{r}": (i, j) for i, (a, rs) in enumerate(zip(actions, roles)) for j, r in enumerate(rs)}
    unknown = [n for n in class_names if n not in slot]
    if unknown:
        raise ValueError(f"classes {unknown[:3]} are not keys of the V-COCO file's actions (e.g. {keys[:2]}): the "
                         "model was not trained on V-COCO's classes")
    class_action = np.array([slot[n][0] for n in class_names], np.int64)
    n = table.num_rows
    if n == 0:
        return []
    image = np.asarray(table.column("image_id").to_numpy(), np.int64)
    hoi = np.asarray(table.column("hoi").to_numpy(), np.int64)
    human = np.asarray(table.column("human_box").combine_chunks().flatten(), np.float64).reshape(-1, 4)
    obj = np.asarray(table.column("object_box").combine_chunks().flatten(), np.float64).reshape(-1, 4)
    score = np.asarray(table.column("score").to_numpy(), np.float64)
    _, first, person = np.unique(np.column_stack([image, human]), axis=0, return_index=True, return_inverse=True)
    person = person.reshape(-1)
    order = np.argsort(first, kind="stable")          # people in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    person = rank[person]
    P, A = len(order), len(actions)
    agent = np.full((P, A), -np.inf)
    np.maximum.at(agent, (person, class_action[hoi]), score)
    best = np.lexsort((-score, hoi, person))          # each (person, class): its best row first
    pc = person[best] * len(class_names) + hoi[best]
    take = best[np.r_[True, pc[1:] != pc[:-1]]]
    inclusive = np.array([0.0, 0.0, 1.0, 1.0])
    out = []
    for p in range(P):
        r = first[order[p]]
        entry = {"image_id": int(coco_ids[image[r]]), "person_box": (human[r] - inclusive).tolist()}
        for a, name in enumerate(actions):
            entry[f"{name}_agent"] = float(agent[p, a]) if np.isfinite(agent[p, a]) else math.nan
            for role in roles[a][1:]:
                entry[f"{name}_{role}"] = [math.nan] * 5
        out.append(entry)
    for r in take.tolist():
        name = class_names[hoi[r]]
        if not name.endswith("_agent"):
            out[person[r]][name] = (obj[r] - inclusive).tolist() + [float(score[r])]
    return out


OFFICIAL_FILE = "vcoco_results.pkl"


def write_official_results(table, images_path: str, split: str, class_names: list[str], out_dir) -> str:
    """Writes the run's detections in V-COCO's official format, ``<out_dir>/vcoco_results.pkl``, when
    ``images_path`` is a prepared V-COCO dataset and ``split`` its test split (whose ground truth prepare
    wrote beside it); otherwise a ``README.txt`` that says why there is none. Returns the file written.

    The pickle holds plain lists and floats: the official ``vsrl_eval.py`` reads it as it is.
    """
    import pickle
    from pathlib import Path

    from pipeline.datasets.vcoco import GROUND_TRUTH, GROUND_TRUTH_FILES, read_coco_instances, read_vcoco

    out = Path(out_dir)
    gt = Path(images_path).parent / GROUND_TRUTH
    if not (gt / GROUND_TRUTH_FILES[0]).exists() or split != "test":
        why = ("the prepared dataset is not V-COCO" if not (gt / GROUND_TRUTH_FILES[0]).exists() else
               f"split {split!r} is not V-COCO's test split, whose ground truth prepare wrote")
        (out / "README.txt").write_text(f"No official results file: {why}. For a V-COCO dataset this folder holds "
                                        f"{OFFICIAL_FILE}, the official vsrl_eval.py format.\n")
        return "README.txt"
    actions = read_vcoco(str(gt / GROUND_TRUTH_FILES[0]))
    coco = read_coco_instances(str(gt / GROUND_TRUTH_FILES[1]))
    by_name = {im.get("file_name"): i for i, im in coco.images.items()}
    images = storage.read_parquet(images_path, columns=["image_id", "file_name"])
    ids = images.column("image_id").to_numpy()
    coco_ids = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, np.int64)
    coco_ids[ids] = [by_name.get(n, -1) for n in images.column("file_name").to_pylist()]
    used = np.unique(np.asarray(table.column("image_id").to_numpy(), np.int64))
    if len(used) and (coco_ids[used] < 0).any():
        bad = used[coco_ids[used] < 0][0]
        raise ValueError(f"image_id {bad} of the detections has no COCO id in {gt / GROUND_TRUTH_FILES[1]}")
    entries = official_list(table, coco_ids, class_names, [a.name for a in actions], [a.roles for a in actions])
    (out / OFFICIAL_FILE).write_bytes(pickle.dumps(entries, protocol=4))
    return OFFICIAL_FILE

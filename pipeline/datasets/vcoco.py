"""V-COCO: the official annotation files and the ``vcoco`` dataset adapter.

Files (docs/datasets.md): the official ``vcoco_{train,val,test}.json`` (s-gupta/v-coco, ``data/vcoco/``),
the COCO 2014 instances that hold their boxes, ``instances_vcoco_all_2014.json`` (written by the official
repository's ``script_pick_annotations.py`` from COCO's ``instances_{train,val}2014.json``), and COCO 2014
images. A V-COCO file is a list with one entry per action: ``action_name``, ``role_name`` (``agent`` first,
then ``obj`` / ``instr``), ``include`` (the COCO objects each role may take; [] = any) and, one value per
annotated person (the same persons in every entry), ``image_id``, ``ann_id`` (the person's COCO
annotation), ``label`` (1 = does the action) and ``role_object_id`` (role-major: the agents' ids, then
each role's object ids; 0 = no object annotated).

The adapter (:func:`read_vcoco_dataset`) makes the pipeline's tables of them:

* classes: one per key of the official results format (:mod:`pipeline.classes.vcoco_vocab`): 
  ``<action>_<role>`` for every (action, role) and ``<action>_agent`` for an action without a role, in the
  file's order, with written prompts; ``objects`` = the COCO objects its role may take (all 80 where the
  file names none; all 80 for an agent-only class too, whose score is then the best over the person's
  pairs); ``coco80`` where there is exactly one;
* image labels: an ``<action>_<role>`` class is positive when some annotated person of the image does the
  action with that role's object annotated, ambiguous (0) when people do the action but none with that
  object annotated (occluded or outside COCO's categories), negative otherwise; an ``<action>_agent``
  class is positive when someone does the action. V-COCO annotates every action of every annotated
  person, so the labels are complete (no unknowns);
* pairs: (person box, role object box) for every person doing an action whose role object is annotated,
  boxes as continuous ``[x, y, x + w, y + h]`` clipped to the image;
* splits: V-COCO's train, val and test; with ``val: ""`` ``prepare.val_fraction`` of train is held out.

It also writes the test split's ground truth in the official formats (:func:`write_ground_truth`): the
evaluate stage scores with exactly what ``defr evaluate --benchmark vcoco`` and the official
``vsrl_eval.py`` read.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.classes import vcoco_vocab
from pipeline.classes.coco import coco80_label
from pipeline.datasets.build import Candidate, DatasetInput, Reject, SplitInput
from pipeline.datasets.files import AnnotationError
from pipeline.storage.names import path_inside

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
GROUND_TRUTH = "vcoco"                       # folder of the prepared test ground truth
GROUND_TRUTH_FILES = ("vcoco_test.json", "instances_test.json")


@dataclass
class VcocoAction:
    """One entry of a V-COCO file (one action), its per-person values as arrays."""

    name: str
    roles: list[str]                 # 'agent' first
    include: list[list[str]]         # per role: the COCO object names it may take ([] = any)
    image_id: np.ndarray             # [N] int64
    ann_id: np.ndarray               # [N] int64: the person's COCO annotation
    label: np.ndarray                # [N] int64: 1 = does the action
    role_object_id: np.ndarray       # [N, len(roles)] int64; column 0 = ann_id, 0 = no object


@dataclass
class CocoInstances:
    """A COCO instances file: images by id, annotations and categories in file order."""

    images: dict[int, dict]
    annotations: list[dict]
    categories: list[dict]
    source: str = ""


def _ints(values, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: expected a list of integers") from None
    if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise AnnotationError(f"{where}: expected a list of integers")
    return arr.astype(np.int64)


def _read_json(uri: str):
    if not storage.exists(uri):
        raise AnnotationError(f"{uri}: file not found")
    with storage.open_file(uri, "rb") as f:
        try:
            return json.loads(f.read())
        except ValueError as e:
            raise AnnotationError(f"{uri}: not valid JSON ({e})") from None


def read_vcoco(uri: str) -> list[VcocoAction]:
    """A V-COCO file (``vcoco_{split}.json``), checked as the official ``_load_vcoco`` reads it.

    Raises:
        AnnotationError: not JSON, not a list of actions, a missing field, lists of differing lengths, or
            entries that annotate different persons (the official code takes the persons of the first).
    """
    content = _read_json(uri)
    if not isinstance(content, list) or not content:
        raise AnnotationError(f"{uri}: expected a list with one entry per action (the official vcoco_*.json)")
    actions = []
    for i, entry in enumerate(content):
        where = f"{uri} entry {i}"
        missing = [k for k in ("action_name", "role_name", "image_id", "ann_id", "label", "role_object_id")
                   if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise AnnotationError(f"{where}: missing field(s) {missing}")
        name, roles = str(entry["action_name"]), [str(r) for r in entry["role_name"]]
        where = f"{uri} action {name!r}"
        if not roles or roles[0] != "agent" or len(roles) > 3:
            raise AnnotationError(f"{where}: role_name {roles}; expected 'agent' then at most two roles")
        image_id, ann_id, label = (_ints(entry[k], f"{where} field {k!r}") for k in ("image_id", "ann_id", "label"))
        if not len(image_id) == len(ann_id) == len(label):
            raise AnnotationError(f"{where}: image_id, ann_id and label have {len(image_id)}, {len(ann_id)} and "
                                  f"{len(label)} values; expected one per annotated person")
        rid = _ints(entry["role_object_id"], f"{where} field 'role_object_id'")
        if len(rid) != len(roles) * len(ann_id):
            raise AnnotationError(f"{where}: role_object_id has {len(rid)} values; expected {len(roles)} roles x "
                                  f"{len(ann_id)} persons")
        include = entry.get("include") or [[] for _ in roles]
        actions.append(VcocoAction(name, roles, [list(x or []) for x in include], image_id, ann_id, label,
                                   rid.reshape(len(roles), -1).T))
    first = actions[0]
    for a in actions[1:]:
        if not (np.array_equal(a.ann_id, first.ann_id) and np.array_equal(a.image_id, first.image_id)):
            raise AnnotationError(f"{uri} action {a.name!r}: annotates other persons than action {first.name!r}; "
                                  "every entry of a V-COCO file lists the same persons")
    names = [a.name for a in actions]
    if len(set(names)) != len(names):
        raise AnnotationError(f"{uri}: action names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return actions


def read_coco_instances(uri: str) -> CocoInstances:
    """A COCO instances file (e.g. ``instances_vcoco_all_2014.json``): images, annotations, categories.

    Raises:
        AnnotationError: not JSON, a missing list, or an image or annotation id given twice.
    """
    content = _read_json(uri)
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(content, dict) or not isinstance(content.get(k), list)]
    if missing:
        raise AnnotationError(f"{uri}: missing list(s) {missing} (expected a COCO instances file)")
    images: dict[int, dict] = {}
    for i, im in enumerate(content["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise AnnotationError(f"{uri}: images[{i}] has no 'id'")
        if im["id"] in images:
            raise AnnotationError(f"{uri}: image id {im['id']} is given twice")
        images[im["id"]] = im
    seen: set = set()
    for i, ann in enumerate(content["annotations"]):
        if not isinstance(ann, dict) or "id" not in ann or "image_id" not in ann:
            raise AnnotationError(f"{uri}: annotations[{i}] has no 'id' or 'image_id'")
        if ann["id"] in seen:
            raise AnnotationError(f"{uri}: annotation id {ann['id']} is given twice")
        seen.add(ann["id"])
    if not content["categories"]:
        raise AnnotationError(f"{uri}: no categories")
    return CocoInstances(images, content["annotations"], content["categories"], uri)


@dataclass
class VcocoFiles:
    """Where the raw files are; paths are relative to ``root`` (a local path or fsspec URI)."""
    root: str
    train: str = "vcoco/vcoco_train.json"
    val: str = "vcoco/vcoco_val.json"            # "" = hold prepare.val_fraction of train out
    test: str = "vcoco/vcoco_test.json"
    instances: str = "instances_vcoco_all_2014.json"
    images: str = "images"                       # COCO's train2014/ and val2014/ folders below it


def class_rows(actions: list[VcocoAction]) -> list[tuple[int, int, str]]:
    """(action index, role index in ``roles``, class name) of every class, in class-id order."""
    out = []
    for a, act in enumerate(actions):
        roles = range(1, len(act.roles)) if len(act.roles) > 1 else [0]
        out += [(a, r, vcoco_vocab.class_name(act.name, act.roles[r])) for r in roles]
    return out


def vcoco_classes(actions: list[VcocoAction], source: str = "") -> pa.Table:
    """The static class columns (see the module docstring)."""
    rows = class_rows(actions)
    objects, coco = [], []
    for a, r, name in rows:
        names = actions[a].include[r] if r < len(actions[a].include) else []
        labels = [coco80_label(n) for n in names]
        if None in labels:
            raise AnnotationError(f"{source} action {actions[a].name!r}: include {names} names a non-COCO object")
        objects.append(sorted(set(labels)) if labels else list(range(80)))
        coco.append(labels[0] if len(set(labels)) == 1 else None)
    verbs = [actions[a].name for a, _, _ in rows]
    return pa.table({
        "hoi": np.arange(len(rows)), "name": [n for _, _, n in rows],
        "verb": [v.replace("_", " ") for v in verbs],
        "verb_ing": [vcoco_vocab.VERB_ING.get(v, v.replace("_", " ")) for v in verbs],
        "prompt": [vcoco_vocab.prompt(actions[a].name, actions[a].roles[r]) for a, r, _ in rows],
        "category": verbs, "coco80": pa.array(coco, pa.int16()),
        "objects": pa.array(objects, pa.list_(pa.int16())),
    })


def _continuous(ann: dict, width: float, height: float) -> list[float] | None:
    """COCO [x, y, w, h] as a continuous [x1, y1, x2, y2] clipped to the image; None when unusable."""
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError):
        return None
    box = [min(max(x, 0.0), width), min(max(y, 0.0), height), min(max(x + w, 0.0), width),
           min(max(y + h, 0.0), height)]
    return box if np.isfinite(box).all() else None


def image_path(images_root: str, file_name: str) -> tuple[str, str]:
    """(uri, problem) of a COCO image: ``<images>/<train2014|val2014>/<file_name>`` for COCO 2014 names
    (``COCO_val2014_000000000042.jpg``), else ``<images>/<file_name>``."""
    parts = PurePosixPath(file_name).stem.split("_")
    folder = storage.join(images_root, parts[1]) if len(parts) == 3 and parts[0] == "COCO" else images_root
    return path_inside(folder, file_name)


def read_vcoco_dataset(files: VcocoFiles) -> DatasetInput:
    """The V-COCO splits as candidates (see the module docstring).

    Raises:
        AnnotationError: malformed files, splits with different actions, an image in two splits, a V-COCO
            image missing from the instances file.
    """
    coco = read_coco_instances(storage.join(files.root, files.instances))
    chosen = [(s, getattr(files, s)) for s in SPLITS if getattr(files, s)]
    if "train" not in dict(chosen) or "test" not in dict(chosen):
        raise AnnotationError("prepare.vcoco: train and test are required (val may be '')")
    per_split = {s: read_vcoco(storage.join(files.root, f)) for s, f in chosen}
    ref = per_split["train"]
    for s, acts in per_split.items():
        if [(a.name, a.roles) for a in acts] != [(a.name, a.roles) for a in ref]:
            raise AnnotationError(f"{storage.join(files.root, getattr(files, s))}: its actions and roles differ from "
                                  f"those of {files.train}")
    rows = class_rows(ref)
    anns_by_image: dict = {}
    for ann in coco.annotations:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    images_root = storage.join(files.root, files.images)
    splits, owner = [], {}
    for split, acts in per_split.items():
        uri = storage.join(files.root, getattr(files, split))
        candidates, rejects = [], []
        order = np.argsort(acts[0].image_id, kind="stable")
        ids, starts = np.unique(acts[0].image_id[order], return_index=True)
        people_of = dict(zip(ids.tolist(), np.split(order, starts[1:])))
        for image_id in ids.tolist():
            if image_id in owner:
                raise AnnotationError(f"{uri}: image {image_id} is also in the {owner[image_id]} split")
            owner[image_id] = split
            im = coco.images.get(image_id)
            if im is None:
                raise AnnotationError(f"{uri}: image {image_id} is not in {coco.source} (made by the official "
                                      "script_pick_annotations.py from COCO 2014)")
            path, problem = image_path(images_root, str(im.get("file_name", "")))
            if problem:
                rejects.append(Reject(coco.source, str(im.get("file_name")), problem, split))
                continue
            pos, amb, pairs, dropped = _image_labels(acts, rows, people_of[image_id], anns_by_image.get(image_id, []),
                                                     im)
            rejects += [Reject(uri, f"image {image_id} {why}", why.split(": ", 1)[-1], split, "pair")
                        for why in dropped]
            negatives = [c for c in range(len(rows)) if c not in pos and c not in amb]
            candidates.append(Candidate(str(im["file_name"]), path, (int(im["width"]), int(im["height"])),
                                        sorted(pos), negatives, sorted(amb), pairs, coco.source))
        splits.append(SplitInput(split, candidates, rejects))
    notes = {"benchmark": "V-COCO (s-gupta/v-coco): official role AP, scenarios 1 and 2",
             "classes": "one per key of the official results format (<action>_<role>, <action>_agent)"}
    return DatasetInput("vcoco", splits, vcoco_classes(ref, storage.join(files.root, files.train)), "multi",
                        notes=notes)


def _image_labels(acts: list[VcocoAction], rows, people: np.ndarray, anns: list[dict], im: dict):
    """Positive and ambiguous classes, pairs and dropped pairs (reasons) of one image (``people``: its rows
    in the V-COCO file)."""
    boxes = {a["id"]: a for a in anns}
    width, height = float(im["width"]), float(im["height"])
    pos, amb, pairs, dropped = set(), set(), [], []
    for c, (a, r, name) in enumerate(rows):
        act = acts[a]
        doing = people[act.label[people] == 1]
        if not len(doing):
            continue
        if r == 0:
            pos.add(c)
            continue
        found = False
        for p in doing:
            obj = int(act.role_object_id[p, r])
            if obj == 0:
                continue
            found = True
            agent = boxes.get(int(act.ann_id[p]))
            target = boxes.get(obj)
            hb = _continuous(agent, width, height) if agent else None
            ob = _continuous(target, width, height) if target else None
            if hb is None or ob is None:
                dropped.append(f"{name}: annotation {int(act.ann_id[p]) if hb is None else obj} has no usable box "
                               "in the instances file")
                continue
            pairs.append((c, hb, ob))
        (pos if found else amb).add(c)
    return pos, amb, pairs, dropped


def write_ground_truth(files: VcocoFiles, out_dir: str | Path) -> list[str]:
    """Writes the test split's ground truth in the official formats into the local folder ``out_dir``: the
    V-COCO file as given and the COCO instances of its images (annotations in file order, segmentations
    left out), so the evaluate stage reads what ``defr evaluate`` and ``vsrl_eval.py`` read. Returns the
    names written."""
    test = storage.join(files.root, files.test)
    with storage.open_file(test, "rb") as f:
        data = f.read()
    coco = read_coco_instances(storage.join(files.root, files.instances))
    ids = set(np.unique(read_vcoco(test)[0].image_id).tolist())
    subset = {"images": [im for i, im in coco.images.items() if i in ids],
              "annotations": [{k: v for k, v in a.items() if k != "segmentation"} for a in coco.annotations
                              if a["image_id"] in ids],
              "categories": coco.categories}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / GROUND_TRUTH_FILES[0]).write_bytes(data)
    (out / GROUND_TRUTH_FILES[1]).write_text(json.dumps(subset))
    return list(GROUND_TRUTH_FILES)

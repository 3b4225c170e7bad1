"""Synthetic COCO boxes for the persons and objects a real V-COCO file names, and results in the official
format with every case the official evaluator treats specially (tests, bench, the check against the
official code).

:func:`instances` builds an instances file for the annotation ids of a V-COCO file (``vcoco_val.json``'s
structure: its images, agents, labels and role objects stay as they are): people, role objects from each
role's ``include`` list, plus unannotated people (some with the very box of an annotated one), crowd
people, other objects and unusable annotations (zero area, empty after the official ``w - 1``), in
shuffled file order. :func:`results` writes detected people for it: jittered and exact boxes, far-away
boxes (IoU 0 with everyone: the tie goes to the first person), people V-COCO does not annotate,
duplicates, NaN scores, roles without objects predicted as zeros, NaN or a box, quantized scores (ties,
also in images with more than 16 detections), lists and NumPy arrays.
"""
from __future__ import annotations

import copy

import numpy as np

from pipeline.classes.coco import COCO80_NAMES, COCO91_IDS

CATEGORIES = [{"id": i, "name": n.replace("_", " "), "supercategory": ""} for i, n in zip(COCO91_IDS, COCO80_NAMES)]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}


def subset(vcoco: list, n_images: int) -> list:
    """The V-COCO file restricted to its first ``n_images`` images (ascending ids)."""
    keep = set(sorted(set(vcoco[0]["image_id"]))[:n_images])
    out = []
    for x in vcoco:
        n = len(x["ann_id"])
        rows = [i for i in range(n) if x["image_id"][i] in keep]
        k = len(x["role_name"])
        rid = np.array(x["role_object_id"]).reshape(k, n)[:, rows]
        out.append({**x, "image_id": [x["image_id"][i] for i in rows], "ann_id": [x["ann_id"][i] for i in rows],
                    "label": [x["label"][i] for i in rows], "role_object_id": rid.reshape(-1).tolist()})
    return out


def _box(rng, W, H, integer=False):
    w, h = rng.uniform(0.1, 0.6) * W, rng.uniform(0.1, 0.7) * H
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    b = [x, y, w, h]
    return [float(round(v)) for v in b] if integer else [round(float(v), 2) for v in b]


def instances(vcoco: list, seed: int = 0, first_new_id: int = 0) -> dict:
    """A COCO instances dict for every annotation id ``vcoco`` names (see the module docstring); the ids of
    the annotations it adds start above every named id and ``first_new_id``."""
    rng = np.random.default_rng(seed)
    images = sorted(set(vcoco[0]["image_id"]))
    n = len(vcoco[0]["ann_id"])
    role_of: dict = {}                               # object ann id -> allowed category names
    for x in vcoco:
        k = len(x["role_name"])
        rid = np.array(x["role_object_id"]).reshape(k, n)
        for j in range(1, k):
            include = (x.get("include") or [[]] * k)[j]
            for i in np.flatnonzero(rid[j]):
                role_of.setdefault(int(rid[j, i]), (int(x["image_id"][i]), include))
    agents = {int(a): int(i) for a, i in zip(vcoco[0]["ann_id"], vcoco[0]["image_id"])}
    next_id = max([*agents, *role_of, first_new_id - 1]) + 1
    anns, imgs = [], []
    by_image = {i: [] for i in images}
    for a, i in agents.items():
        by_image[i].append((a, "person"))
    for o, (i, include) in role_of.items():
        if o not in agents:
            name = str(rng.choice(include)) if include else str(rng.choice([c["name"] for c in CATEGORIES]))
            by_image[i].append((o, name))
    for i in images:
        W, H = int(rng.integers(300, 640)), int(rng.integers(240, 480))
        imgs.append({"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": W, "height": H})
        todo = list(by_image[i])
        for _ in range(int(rng.integers(0, 4))):             # people V-COCO does not annotate
            todo.append((next_id, "person"))
            next_id += 1
        for _ in range(int(rng.integers(0, 3))):             # other objects
            todo.append((next_id, str(rng.choice([c["name"] for c in CATEGORIES[1:]]))))
            next_id += 1
        made = []
        for ann_id, name in todo:
            box = _box(rng, W, H, integer=rng.random() < 0.5)
            made.append({"id": ann_id, "image_id": i, "category_id": CAT_ID[name], "bbox": box,
                         "area": round(box[2] * box[3] * 0.7, 2), "iscrowd": 0, "segmentation": [[0, 0, 1, 1, 2, 2]]})
        people = [m for m in made if m["category_id"] == 1]
        if people and rng.random() < 0.3:                    # an unannotated person with an annotated one's box
            made.append({**people[0], "id": next_id, "segmentation": []})
            next_id += 1
        if rng.random() < 0.2:                               # a crowd of people
            made.append({"id": next_id, "image_id": i, "category_id": 1, "bbox": _box(rng, W, H), "area": 900.0,
                         "iscrowd": 1, "segmentation": {"counts": [], "size": [H, W]}})
            next_id += 1
        if rng.random() < 0.3:                               # unusable: zero area, or empty after w - 1
            made.append({"id": next_id, "image_id": i, "category_id": 1, "bbox": [5.0, 5.0, 30.0, 40.0],
                         "area": 0.0, "iscrowd": 0})
            made.append({"id": next_id + 1, "image_id": i, "category_id": 1, "bbox": [10.0, 10.0, 0.5, 30.0],
                         "area": 15.0, "iscrowd": 0})
            next_id += 2
        rng.shuffle(made)
        anns += made
    order = rng.permutation(len(imgs))
    return {"info": {"description": "synthetic boxes for V-COCO ids (tests)"}, "licenses": [],
            "images": [imgs[k] for k in order], "annotations": anns, "categories": CATEGORIES}


def _clean(bbox, W, H):
    """The official clean box of a COCO bbox (x2 = x1 + max(0, w - 1), clipped)."""
    x1, y1 = bbox[0], bbox[1]
    x2, y2 = x1 + max(0.0, bbox[2] - 1.0), y1 + max(0.0, bbox[3] - 1.0)
    return [min(W - 1.0, max(0.0, x1)), min(H - 1.0, max(0.0, y1)), min(W - 1.0, max(0.0, x2)),
            min(H - 1.0, max(0.0, y2))]


def results(vcoco: list, coco: dict, seed: int = 0, every_key: bool = True) -> list[dict]:
    """Detected people in the official format for ``coco``'s boxes (see the module docstring): a person who
    does an action mostly scores higher and mostly gets its role object's box; ``every_key=False`` also
    leaves some keys out (read as not predicted)."""
    rng = np.random.default_rng(seed)
    keys = [(x["action_name"], r) for x in vcoco for r in x["role_name"]]
    n = len(vcoco[0]["ann_id"])
    truth: dict = {}                                          # (person ann id, action) -> role object ids
    for x in vcoco:
        rid = np.array(x["role_object_id"]).reshape(len(x["role_name"]), n)
        for i in np.flatnonzero(np.array(x["label"]) == 1):
            truth[(int(x["ann_id"][i]), x["action_name"])] = [int(v) for v in rid[1:, i]]
    size = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    objects: dict = {}
    for a in coco["annotations"]:
        objects.setdefault(a["image_id"], []).append(a)
    out = []
    for image_id in sorted(size):
        W, H = size[image_id]
        anns = objects.get(image_id, [])
        box_of = {a["id"]: _clean(a["bbox"], W, H) for a in anns}
        boxes = list(box_of.values())
        quantized = rng.random() < 0.3
        many = rng.random() < 0.1
        entries = []
        for p in (a for a in anns if a["category_id"] == 1):
            for _ in range(int(rng.integers(0, 4)) + (6 if many else 0)):
                jit = 0 if rng.random() < 0.3 else rng.normal(0, 6, 4)
                entries.append((p["id"], np.asarray(box_of[p["id"]]) + jit))
        for _ in range(int(rng.integers(0, 2))):              # far from everyone: IoU 0 ties
            entries.append((None, np.array([W + 50.0, H + 50.0, W + 90.0, H + 120.0])))
        for person, pbox in entries:
            det = {"image_id": int(image_id) if rng.random() < 0.7 else np.int64(image_id),
                   "person_box": pbox.tolist() if rng.random() < 0.5 else pbox.astype(np.float32)}
            for action, role in keys:
                if not every_key and rng.random() < 0.1:
                    continue
                doing = truth.get((person, action))
                score = rng.uniform(0.3, 1.0) if doing is not None and rng.random() < 0.8 else rng.uniform(0, 0.7)
                score = float(np.round(score, 1) if quantized else score)
                if rng.random() < 0.08:
                    score = float("nan")
                if role == "agent":
                    det[f"{action}_agent"] = score
                    continue
                j = [r for a, r in keys if a == action and r != "agent"].index(role)
                target = doing[j] if doing else 0
                u = rng.random()
                if target and u < 0.75:
                    rb = (np.asarray(box_of[target]) + (0 if u < 0.4 else rng.normal(0, 4, 4))).tolist()
                elif u < 0.85:
                    rb = [0.0, 0.0, 0.0, 0.0]
                elif u < 0.92:
                    rb = [float("nan")] * 4
                else:
                    rb = boxes[int(rng.integers(len(boxes)))] if boxes else [1.0, 2.0, 30.0, 40.0]
                value = list(rb) + [score]
                det[f"{action}_{role}"] = value if rng.random() < 0.5 else np.asarray(value, np.float64)
            out.append(det)
            if rng.random() < 0.05:                           # an exact duplicate
                out.append(copy.deepcopy(det))
    order = rng.permutation(len(out))                        # images interleaved in the file
    return [out[k] for k in order]

"""DEMO ONLY: a synthetic dataset in V-COCO's file formats, drawn like the HICO demo (:mod:`pipeline.demo.scenes`:
a stick-figure person, objects whose shape and colour say the object and whose placement says the action).

:func:`generate_vcoco` writes what the ``vcoco`` adapter reads (:mod:`pipeline.datasets.vcoco`):
``vcoco/vcoco_{train,val,test}.json`` in the official layout (all 26 actions with their real roles and
``include`` lists; a few of them shown: :data:`SCENES`), ``instances_vcoco_all_2014.json`` (COCO boxes: the
people, their objects, and unannotated people V-COCO does not list), COCO 2014-style JPEG names under
``images/train2014`` (train, val) and ``images/val2014`` (test), and ``oracle_boxes.json``: the test
images' COCO boxes perturbed (jitter, misses, false positives, random scores), the DEMO ONLY boxes for
``detect.backend: precomputed`` (the oracle backend labels objects by a class's single COCO object, which
V-COCO's roles do not have). Some actions are annotated without their role object (its id 0), as in V-COCO.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import ImageDraw

from pipeline.classes.coco import COCO80_NAMES, COCO91_IDS
from pipeline.classes.vcoco_vocab import INCLUDE, ROLES
from pipeline.demo.activities import _scene_image, _zipf
from pipeline.demo.scenes import _draw_person

# (object, placement) -> the V-COCO (action, role) pairs that placement shows
SCENES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("bicycle", "below"): (("ride", "instr"), ("sit", "instr")),
    ("horse", "below"): (("ride", "instr"), ("sit", "instr")),
    ("skateboard", "below"): (("skateboard", "instr"),),
    ("sports_ball", "foot"): (("kick", "obj"),),
    ("sports_ball", "hand"): (("hold", "obj"),),
    ("sports_ball", "above"): (("throw", "obj"),),
    ("cup", "mouth"): (("drink", "instr"),),
    ("cup", "hand"): (("hold", "obj"),),
    ("umbrella", "above"): (("hold", "obj"),),
    ("kite", "above"): (("look", "obj"),),
    ("dog", "far"): (),
    ("umbrella", "far"): (),
}
MISSING_ROLE_RATE = 0.1       # an action annotated without its role object (V-COCO: occluded, or not a COCO object)
SECOND_PERSON_RATE = 0.35     # a person COCO annotates and V-COCO does not
CATEGORY_ID = {n: i for n, i in zip(COCO80_NAMES, COCO91_IDS)}


def _coco_box(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _image(rng, scenes: list[tuple[str, str]], max_size: tuple[int, int], second: bool):
    """A picture: the annotated person with one object per scene, maybe a second (unannotated) person."""
    im, person, boxes = _scene_image(rng, scenes, max_size)
    W, H = im.size
    d = ImageDraw.Draw(im)
    other = None
    if second:
        oh = rng.uniform(0.3, 0.4) * H
        ox1 = rng.uniform(0.72, 0.95) * W - 0.45 * oh
        oy1 = rng.uniform(0.05, 0.5) * H
        other = (ox1, oy1, ox1 + 0.45 * oh, oy1 + oh)
        _draw_person(d, other, tuple(int(c) for c in rng.integers(0, 60, size=3)))
    return im, person, boxes, other


def generate_vcoco(out_dir: str | Path, n_train: int = 300, n_test: int = 100, seed: int = 0,
                   image_size: tuple[int, int] = (160, 128), zipf: float = 1.0) -> dict:
    """Writes the V-COCO-format demo (see the module docstring); returns counts per split. ``n_train`` images
    make V-COCO's train and val splits (one in six is val)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    keys = list(SCENES)
    p = _zipf(len(keys), zipf, rng)
    n_val = max(1, n_train // 6)
    splits = (("train", n_train - n_val, "train2014"), ("val", n_val, "train2014"), ("test", n_test, "val2014"))
    images, annotations, oracle, summary = [], [], {}, {}
    next_image, next_ann = 100, 1000
    for split, n, folder in splits:
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        agents = []                           # (image id, ann id, {action: role object ids})
        for _ in range(n):
            next_image += int(rng.integers(1, 40))
            chosen, used_obj, used_place = [], set(), set()
            wanted = int(rng.choice([1, 2], p=[0.6, 0.4]))
            for s in rng.choice(len(keys), size=6, p=p):
                obj, place = keys[s]
                if obj not in used_obj and place not in used_place:
                    chosen.append(keys[s])
                    used_obj.add(obj), used_place.add(place)
                if len(chosen) == wanted:
                    break
            im, person, boxes, other = _image(rng, chosen, image_size, rng.random() < SECOND_PERSON_RATE)
            name = f"COCO_{folder}_{next_image:012d}.jpg"
            im.save(out / "images" / folder / name, quality=90)
            images.append({"id": next_image, "file_name": name, "width": im.width, "height": im.height})
            anns = [(person, "person")] + [(b, obj) for b, (obj, _) in zip(boxes, chosen)]
            if other is not None:
                anns.append((other, "person"))
            ids = []
            for box, category in anns:
                b = _coco_box(box)
                annotations.append({"id": next_ann, "image_id": next_image, "category_id": CATEGORY_ID[category],
                                    "bbox": b, "area": round(b[2] * b[3] * 0.6, 2), "iscrowd": 0})
                ids.append(next_ann)
                next_ann += 1
            roles: dict[str, dict[str, int]] = {}
            for (obj, place), object_id in zip(chosen, ids[1:]):
                for action, role in SCENES[(obj, place)]:
                    roles.setdefault(action, {})[role] = 0 if rng.random() < MISSING_ROLE_RATE else object_id
            if not {"ride", "sit"} & set(roles):
                roles["stand"] = {}
            agents.append((next_image, ids[0], roles))
            if split == "test":
                oracle[name] = _oracle_boxes(rng, anns, im.width, im.height)
        (out / "vcoco").mkdir(exist_ok=True)
        (out / "vcoco" / f"vcoco_{split}.json").write_text(json.dumps(_vcoco_file(agents)))
        summary[split] = {"images": n, "actions": int(sum(len(r) for _, _, r in agents))}
    categories = [{"id": i, "name": n.replace("_", " "), "supercategory": ""} for n, i in CATEGORY_ID.items()]
    (out / "instances_vcoco_all_2014.json").write_text(json.dumps(
        {"info": {"description": "DEMO ONLY: synthetic"}, "licenses": [], "images": images,
         "annotations": annotations, "categories": categories}))
    (out / "oracle_boxes.json").write_text(json.dumps(oracle))
    (out / "DEMO_ONLY.txt").write_text("Synthetic V-COCO-format data written by pipeline/demo/vcoco.py; not V-COCO. "
                                       "oracle_boxes.json: perturbed ground truth, not a detector.\n"
                                       + json.dumps(summary, indent=1))
    return summary


def _vcoco_file(agents: list[tuple[int, int, dict]]) -> list[dict]:
    """The official layout: one entry per action, one value per annotated person, role-major object ids."""
    out = []
    for action, roles in ROLES.items():
        names = ["agent", *roles]
        label = [1 if action in r else 0 for _, _, r in agents]
        object_ids = [[a for _, a, _ in agents]] + [[r.get(action, {}).get(role, 0) for _, _, r in agents]
                                                    for role in roles]
        out.append({"action_name": action, "role_name": names,
                    "include": [[]] + [list(INCLUDE.get((action, role), ())) for role in roles],
                    "image_id": [i for i, _, _ in agents], "ann_id": [a for _, a, _ in agents], "label": label,
                    "role_object_id": [v for ids in object_ids for v in ids]})
    return out


def _oracle_boxes(rng, anns, W: int, H: int) -> list[dict]:
    """DEMO ONLY: an image's COCO boxes jittered, some missed, plus false positives, random scores."""
    out = []
    for box, category in anns:
        if rng.random() < 0.05:
            continue
        b = np.asarray(box, float)
        size = np.concatenate([b[2:] - b[:2]] * 2)
        b = np.clip(b + rng.normal(0, 0.03, 4) * size, 0, [W, H, W, H])
        out.append({"category": category, "box": [round(float(v), 2) for v in b],
                    "score": round(float(rng.uniform(0.5, 1.0)), 3)})
    for _ in range(int(rng.poisson(0.5))):
        w, h = rng.uniform(0.1, 0.4) * W, rng.uniform(0.1, 0.4) * H
        x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
        category = "person" if rng.random() < 0.5 else str(rng.choice(sorted({o for o, _ in SCENES})))
        out.append({"category": category, "box": [round(x, 2), round(y, 2), round(x + w, 2), round(y + h, 2)],
                    "score": round(float(rng.uniform(0.05, 0.5)), 3)})
    return out

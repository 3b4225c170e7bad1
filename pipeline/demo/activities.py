"""DEMO ONLY: synthetic datasets in the MPII and ``table`` formats, drawn like the HICO demo
(:mod:`pipeline.demo.scenes`: a stick-figure person, objects whose shape and colour say the object and
whose placement says the activity).

- :func:`generate_mpii`: one activity per image (a scene = object + placement, named MPII-style
  ``"<object>, <placement>"``, its object as the category); JPEGs with 9-digit names, the split lists
  ``images_mpii_{train,val,test}.txt``, ``activities.csv`` and ``mpii_human_pose_v1_u12_1.mat`` in the
  official nested-struct layout (:func:`write_mpii_mat`), both holding the same labels.
- :func:`generate_table`: five classes HICO does not have (verb / object fields, a free-text prompt),
  1-2 per image, with human-object boxes: ``classes.csv``, ``labels.csv``, ``pairs.csv`` and JPEGs.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.demo.scenes import SCENES, SIZES, _draw_object, _draw_person, _place

# The table demo's classes: (object, placement) scene -> class fields (a user's own label set).
TABLE_CLASSES = {
    ("sports_ball", "above"): {"name": "juggle ball", "verb": "juggle", "verb_ing": "juggling", "object": "ball",
                               "coco_object": "sports_ball"},
    ("sports_ball", "foot"): {"name": "dribble ball", "verb": "dribble", "verb_ing": "dribbling", "object": "ball",
                              "coco_object": "sports_ball"},
    ("umbrella", "above"): {"name": "shelter under umbrella", "object": "umbrella",
                            "prompt": "a person sheltering from the rain under an umbrella"},
    ("cup", "mouth"): {"name": "sip from cup", "verb": "sip from", "verb_ing": "sipping from", "object": "cup"},
    ("skateboard", "below"): {"name": "balance on skateboard", "verb": "balance on", "verb_ing": "balancing on",
                              "object": "skateboard"},
}


def _scene_image(rng: np.random.Generator, scenes: list[tuple[str, str]], max_size: tuple[int, int]):
    """An image of a person with one object per scene; returns (image, person box, object boxes)."""
    W = int(rng.integers(int(0.75 * max_size[0]), max_size[0] + 1))
    H = int(rng.integers(int(0.75 * max_size[1]), max_size[1] + 1))
    arr = np.clip(rng.integers(200, 256, size=3) + rng.normal(0, 8, size=(H, W, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    d = ImageDraw.Draw(im)
    ph = rng.uniform(0.45, 0.6) * H
    px1, py1 = rng.uniform(0.12, 0.3) * W, rng.uniform(0.25, 0.38) * H
    person = (px1, py1, px1 + 0.45 * ph, py1 + ph)
    _draw_person(d, person, tuple(int(c) for c in rng.integers(0, 60, size=3)))
    boxes = []
    for obj, place in scenes:
        box = _place(place, person, SIZES[obj], W, H, rng)
        _draw_object(d, obj, box)
        boxes.append(box)
    return im, person, boxes


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    p = 1.0 / (1 + np.argsort(rng.permutation(n))) ** exponent
    return p / p.sum()


def activity_name(scene: tuple[str, str]) -> str:
    return f"{scene[0].replace('_', ' ')}, {scene[1]}"


def generate_mpii(out_dir: str | Path, n_train: int = 120, n_val: int = 60, n_test: int = 10, seed: int = 0,
                  image_size: tuple[int, int] = (160, 128), zipf: float = 1.0) -> dict:
    """Writes an MPII-format activity dataset (see the module docstring); returns counts per split."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    scenes = list(SCENES)
    p = _zipf(len(scenes), zipf, rng)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, entries, summary = [], [], {}
    next_id = 1000
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        ids = []
        for _ in range(n):
            next_id += int(rng.integers(1, 50))
            name = f"{next_id:09d}.jpg"
            scene = scenes[int(rng.choice(len(scenes), p=p))]
            im, _, _ = _scene_image(rng, [scene], image_size)
            im.save(out / "images" / name, quality=90)
            ids.append(name[:-4])
            labelled = split != "test"     # MPII's test labels are not public
            if labelled:
                rows.append({"image": name, "split": split, "activity": activity_name(scene), "category": scene[0]})
            entries.append((name, split != "test", activity_name(scene) if labelled else None,
                            scene[0] if labelled else None, scenes.index(scene) if labelled else -1))
        (out / f"images_mpii_{split}.txt").write_text("\n".join(ids) + "\n")
        summary[split] = n
    with open(out / "activities.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "split", "activity", "category"])
        writer.writeheader()
        writer.writerows(rows)
    write_mpii_mat(out / "mpii_human_pose_v1_u12_1.mat", entries)
    summary["activities"] = len({r["activity"] for r in rows})
    (out / "DEMO_ONLY.txt").write_text("Synthetic MPII-format data written by pipeline/demo/activities.py; "
                                       "not MPII.\n" + json.dumps(summary, indent=1))
    return summary


def write_mpii_mat(path: str | Path, entries: list[tuple[str, bool, str | None, str | None, int]]) -> None:
    """Writes ``RELEASE`` as the official ``mpii_human_pose_v1_u12_1.mat`` lays it out: 1xN struct arrays
    ``annolist`` (field ``image``, a struct with ``name``) and ``img_train``, an Nx1 struct array ``act``
    (``cat_name``, ``act_name``, ``act_id``; empty names and act_id -1 for an image without activity) and
    ``single_person`` / ``video_list`` beside them. ``entries``: (name, is_train, act_name, cat_name, act_id)."""
    n = len(entries)
    image_t = [("name", "O")]
    annolist = np.zeros((1, n), dtype=[("image", "O"), ("annorect", "O"), ("frame_sec", "O"), ("vididx", "O")])
    act = np.zeros((n, 1), dtype=[("cat_name", "O"), ("act_name", "O"), ("act_id", "O")])
    for i, (name, _, act_name, cat_name, act_id) in enumerate(entries):
        image = np.zeros((1, 1), dtype=image_t)
        image[0, 0]["name"] = name
        annolist[0, i] = (image, np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)))
        empty = np.zeros((0, 0))
        act[i, 0] = (cat_name if cat_name else empty, act_name if act_name else empty, float(act_id))
    release = np.zeros((1, 1), dtype=[("annolist", "O"), ("img_train", "O"), ("version", "O"),
                                      ("single_person", "O"), ("act", "O"), ("video_list", "O")])
    release[0, 0] = (annolist, np.array([[float(e[1]) for e in entries]]), "12",
                     np.empty((n, 1), dtype=object), act, np.empty((1, 0), dtype=object))
    for i in range(n):
        release[0, 0]["single_person"][i, 0] = np.zeros((0, 0))
    from pipeline.demo.scenes import savemat_reproducible

    savemat_reproducible(path, {"RELEASE": release})


def generate_table(out_dir: str | Path, n_train: int = 150, n_test: int = 50, seed: int = 0,
                   image_size: tuple[int, int] = (160, 128)) -> dict:
    """Writes a ``table``-format dataset with :data:`TABLE_CLASSES` (see the module docstring)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    scenes = list(TABLE_CLASSES)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with open(out / "classes.csv", "w", newline="") as f:
        fields = ["name", "verb", "verb_ing", "object", "coco_object", "prompt"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: c.get(k, "") for k in fields} for c in TABLE_CLASSES.values())
    labels, pairs, summary = [], [], {}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            chosen = []
            for s in rng.permutation(len(scenes))[:int(rng.choice([1, 2], p=[0.6, 0.4]))]:
                obj, place = scenes[s]
                if all(obj != o and place != p for o, p in chosen):
                    chosen.append(scenes[s])
            im, person, boxes = _scene_image(rng, chosen, image_size)
            name = f"{split}_{i:05d}.jpg"
            im.save(out / "images" / name, quality=90)
            for scene, box in zip(chosen, boxes):
                cls = TABLE_CLASSES[scene]["name"]
                labels.append({"image": name, "split": split, "label": cls})
                pairs.append({"image": name, "label": cls, "human_box": json.dumps([round(v, 2) for v in person]),
                              "object_box": json.dumps([round(v, 2) for v in box])})
        summary[split] = n
    for fname, rows, fields in (("labels.csv", labels, ["image", "split", "label"]),
                                ("pairs.csv", pairs, ["image", "label", "human_box", "object_box"])):
        with open(out / fname, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    summary["classes"] = len(TABLE_CLASSES)
    (out / "DEMO_ONLY.txt").write_text("Synthetic table-format data written by pipeline/demo/activities.py."
                                       "\n" + json.dumps(summary, indent=1))
    return summary

"""DEMO ONLY: a synthetic HICO / HICO-DET dataset written in the real file formats.

``generate(out_dir, ...)`` writes ``anno.mat`` (list_action, anno_train, anno_test, list_train,
list_test), ``instances_train2015.json`` / ``instances_test2015.json`` (pocket/UPT form, 1-based
inclusive boxes) and JPEGs under ``images/{train,test}2015/``, so the demo runs through exactly the
code path that real data takes.

The images carry learnable signal: a stick-figure person; objects whose shape and colour decide the
object; whose placement relative to the person (under the hips, at the hand, above the head, at the
foot, at the mouth, far away) decides the verbs. Each image has 1-3 objects (several labels), scenes
follow a Zipf law (exponent 2: with 1,800 training images about 8 classes have 2-5 training images and 16
have at most 10, so Few@k and the rare split are not empty), and labels use HICO's coding: +1 positive,
-1 for the other HOIs of a present object (a few marked 0, ambiguous), NaN for absent objects.

Classes: 8 real HICO objects chosen for distinct shapes (bicycle, horse, sports_ball, umbrella, kite,
cup, skateboard, dog) and, per object, real HICO verbs that a placement can show (``SCENES``): 36 HOI
classes in all. The other 564 classes never occur, as unannotated classes in HICO.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from pipeline.classes.hico_vocab import Vocabulary

# (object, placement) -> verbs shown by that placement.
SCENES: dict[tuple[str, str], tuple[str, ...]] = {
    ("bicycle", "below"): ("ride", "sit_on", "straddle"),
    ("bicycle", "hand"): ("hold", "push"),
    ("bicycle", "far"): ("no_interaction",),
    ("horse", "below"): ("ride", "straddle"),
    ("horse", "hand"): ("feed", "pet"),
    ("horse", "far"): ("no_interaction",),
    ("sports_ball", "foot"): ("kick", "dribble"),
    ("sports_ball", "hand"): ("hold",),
    ("sports_ball", "above"): ("throw",),
    ("sports_ball", "far"): ("no_interaction",),
    ("umbrella", "above"): ("hold", "stand_under"),
    ("umbrella", "hand"): ("carry",),
    ("umbrella", "far"): ("no_interaction",),
    ("kite", "above"): ("fly",),
    ("kite", "hand"): ("hold",),
    ("kite", "far"): ("no_interaction",),
    ("cup", "mouth"): ("drink_with", "sip"),
    ("cup", "hand"): ("hold",),
    ("cup", "far"): ("no_interaction",),
    ("skateboard", "below"): ("ride", "stand_on"),
    ("skateboard", "hand"): ("carry",),
    ("skateboard", "far"): ("no_interaction",),
    ("dog", "hand"): ("pet", "feed"),
    ("dog", "foot"): ("walk",),
    ("dog", "far"): ("no_interaction",),
}
COLOURS = {"bicycle": (200, 30, 30), "horse": (120, 70, 20), "sports_ball": (240, 140, 0),
           "umbrella": (30, 60, 210), "kite": (230, 210, 0), "cup": (20, 160, 60),
           "skateboard": (150, 40, 170), "dog": (110, 110, 110)}
SIZES = {"bicycle": (1.1, .45), "horse": (1.3, .6), "sports_ball": (.35, .35), "umbrella": (1.0, .35),
         "kite": (.5, .5), "cup": (.22, .25), "skateboard": (.9, .14), "dog": (.7, .4)}  # x person height
AMBIGUOUS_RATE = 0.07


def scene_classes(vocab: Vocabulary) -> list[list[int]]:
    """HOI ids of each scene in ``SCENES`` order (raises KeyError if a name is not a HICO class)."""
    return [[vocab.index(v, o) for v in verbs] for (o, _), verbs in SCENES.items()]


def _draw_object(d: ImageDraw.ImageDraw, obj: str, box: tuple[float, ...]) -> None:
    x1, y1, x2, y2 = box
    c = COLOURS[obj]
    if obj == "bicycle":
        r = (y2 - y1) / 2
        d.ellipse((x1, y1, x1 + 2 * r, y2), outline=c, width=3)
        d.ellipse((x2 - 2 * r, y1, x2, y2), outline=c, width=3)
        d.line((x1 + r, y1 + r, x2 - r, y1 + r), fill=c, width=3)
    elif obj == "sports_ball":
        d.ellipse(box, fill=c)
    elif obj == "umbrella":
        d.pieslice((x1, y1, x2, y2 + (y2 - y1)), 180, 360, fill=c)
    elif obj == "kite":
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        d.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=c)
    elif obj in ("horse", "dog"):
        h = y2 - y1
        d.rectangle((x1, y1, x2, y1 + 0.55 * h), fill=c)
        for fx in (0.1, 0.8):
            d.rectangle((x1 + fx * (x2 - x1), y1 + 0.5 * h, x1 + (fx + 0.1) * (x2 - x1), y2), fill=c)
    else:  # cup, skateboard: solid rectangles of their own colour and aspect
        d.rectangle(box, fill=c)


def _place(placement: str, person: tuple[float, ...], size: tuple[float, float], W: int, H: int,
           rng: np.random.Generator) -> tuple[float, ...]:
    px1, py1, px2, py2 = person
    ph, pw = py2 - py1, px2 - px1
    w, h = size[0] * ph, size[1] * ph
    cx = (px1 + px2) / 2
    if placement == "below":
        x1, y1 = cx - w / 2, py1 + 0.55 * ph
    elif placement == "hand":
        x1, y1 = px2 - 0.1 * pw, py1 + 0.45 * ph - h / 2
    elif placement == "above":
        x1, y1 = cx - w / 2, py1 - h - 1
    elif placement == "foot":
        x1, y1 = px2 - 0.15 * pw, py2 - h
    elif placement == "mouth":
        x1, y1 = cx + 0.12 * ph, py1 + 0.02 * ph
    else:  # far: on the other side of the image, away from the person
        x1 = rng.uniform(0.68, 0.95) * W - w
        y1 = rng.uniform(0.1, 0.9) * H - h / 2
    x1 += rng.normal(0, 1.5)
    y1 += rng.normal(0, 1.5)
    return (float(np.clip(x1, 0, W - w - 1)), float(np.clip(y1, 0, H - h - 1)),
            float(np.clip(x1 + w, w, W - 1)), float(np.clip(y1 + h, h, H - 1)))


def _draw_person(d: ImageDraw.ImageDraw, box: tuple[float, ...], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    h, cx = y2 - y1, (x1 + x2) / 2
    r = 0.1 * h
    d.ellipse((cx - r, y1, cx + r, y1 + 2 * r), fill=colour)
    d.line((cx, y1 + 2 * r, cx, y1 + 0.6 * h), fill=colour, width=4)
    d.line((x1, y1 + 0.35 * h, x2, y1 + 0.35 * h), fill=colour, width=3)
    d.line((cx, y1 + 0.6 * h, x1 + 0.15 * (x2 - x1), y2), fill=colour, width=3)
    d.line((cx, y1 + 0.6 * h, x2 - 0.15 * (x2 - x1), y2), fill=colour, width=3)


def _one_image(rng: np.random.Generator, scene_p: np.ndarray, max_size: tuple[int, int]):
    W = int(rng.integers(int(0.75 * max_size[0]), max_size[0] + 1))
    H = int(rng.integers(int(0.75 * max_size[1]), max_size[1] + 1))
    bg = rng.integers(200, 256, size=3)
    arr = np.clip(bg + rng.normal(0, 8, size=(H, W, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    d = ImageDraw.Draw(im)
    ph = rng.uniform(0.45, 0.6) * H
    pw = 0.45 * ph
    px1 = rng.uniform(0.12, 0.3) * W
    py1 = rng.uniform(0.25, 0.38) * H
    person = (px1, py1, px1 + pw, py1 + ph)
    keys = list(SCENES)
    n_obj = int(rng.choice([1, 2, 3], p=[0.55, 0.35, 0.10]))
    chosen, used_objects, used_places = [], set(), set()
    for s in rng.choice(len(keys), size=8, p=scene_p):
        obj, place = keys[s]
        if obj in used_objects or place in used_places:
            continue
        chosen.append(int(s))
        used_objects.add(obj)
        used_places.add(place)
        if len(chosen) == n_obj:
            break
    _draw_person(d, person, tuple(int(c) for c in rng.integers(0, 60, size=3)))
    objects = []
    for s in chosen:
        obj, place = keys[s]
        box = _place(place, person, SIZES[obj], W, H, rng)
        _draw_object(d, obj, box)
        objects.append((s, box))
    return im, person, objects


def _label_column(vocab: Vocabulary, scene_hois: list[list[int]], objects, rng) -> np.ndarray:
    col = np.full(len(vocab), np.nan)
    keys = list(SCENES)
    for s, _ in objects:
        hois = vocab.object_to_hois[vocab.objects.index(keys[s][0])]
        col[hois] = np.where(rng.random(len(hois)) < AMBIGUOUS_RATE, 0.0, -1.0)
    for s, _ in objects:
        col[scene_hois[s]] = 1.0
    return col


def image_pairs(vocab: Vocabulary, scene_hois: list[list[int]], person: tuple[float, ...], objects) -> dict:
    """One image's HICO-DET annotation (pocket/UPT form): a pair per HOI its scenes show."""
    ann = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
    for s, box in objects:
        for h in scene_hois[s]:
            ann["boxes_h"].append(_one_based(person))
            ann["boxes_o"].append(_one_based(box))
            ann["hoi"].append(h)
            ann["object"].append(int(vocab.hoi_object[h]))
            ann["verb"].append(int(vocab.hoi_verb[h]))
    return ann


def _one_based(box: tuple[float, ...]) -> list[float]:
    x1, y1, x2, y2 = box
    return [float(np.floor(x1) + 1), float(np.floor(y1) + 1), float(np.ceil(x2)), float(np.ceil(y2))]


def generate(out_dir: str | Path, vocab: Vocabulary, n_train: int = 1800, n_test: int = 400,
             seed: int = 0, image_size: tuple[int, int] = (160, 128), zipf: float = 2.0) -> dict:
    """Writes the demo dataset to ``out_dir`` and returns a summary (counts per split)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    scene_hois = scene_classes(vocab)
    order = rng.permutation(len(SCENES))            # which scenes are frequent is seeded
    scene_p = 1.0 / (1 + np.argsort(order)) ** zipf
    scene_p /= scene_p.sum()
    keys = list(SCENES)
    mat, summary = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        folder = out / "images" / f"{split}2015"
        folder.mkdir(parents=True, exist_ok=True)
        names, labels, sizes, annotation = [], [], [], []
        for i in range(n):
            im, person, objects = _one_image(rng, scene_p, image_size)
            name = f"HICO_{split}2015_{i + 1:08d}.jpg"
            im.save(folder / name, quality=90)
            names.append(name)
            sizes.append([im.width, im.height])
            labels.append(_label_column(vocab, scene_hois, objects, rng))
            annotation.append(image_pairs(vocab, scene_hois, person, objects))
        mat[f"anno_{split}"] = np.stack(labels, axis=1)
        mat[f"list_{split}"] = np.array([[x] for x in names], dtype=object)
        counts = np.bincount([h for a in annotation for h in a["hoi"]], minlength=len(vocab))
        if split == "train":
            rare = [int(h) for h in np.flatnonzero(counts < 10)]
        _write_instances(out / f"instances_{split}2015.json", vocab, names, sizes, annotation, rare)
        summary[split] = {"images": n, "pairs": int(counts.sum()),
                          "classes_present": int((counts > 0).sum())}
    mat["list_action"] = _list_action(vocab)
    savemat_reproducible(out / "anno.mat", mat)
    summary["scenes"] = {f"{o}/{p}": [vocab.verbs[vocab.hoi_verb[h]] for h in hs]
                         for (o, p), hs in zip(keys, scene_hois)}
    (out / "DEMO_ONLY.txt").write_text("Synthetic demo data written by pipeline/demo/scenes.py; "
                                       "not HICO. See README 'Demo data'.\n" + json.dumps(summary, indent=1))
    return summary


def savemat_reproducible(path: Path, mat: dict) -> None:
    """``scipy.io.savemat`` without the creation time it writes into the 116-byte MAT header: the same
    inputs give the same bytes, so DVC hashes (and teammates' run caches) match across runs and machines."""
    import io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, mat, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by pipeline.demo.scenes (DEMO ONLY)".ljust(116)
    path.write_bytes(bytes(data))


def _write_instances(path: Path, vocab: Vocabulary, names, sizes, annotation, rare) -> None:
    data = {
        "annotation": annotation, "filenames": names, "size": sizes,
        "empty": [i for i, a in enumerate(annotation) if not a["hoi"]],
        "objects": vocab.objects, "verbs": vocab.verbs,
        "correspondence": [[h, int(o), int(v)] for h, (v, o) in enumerate(vocab.hoi_pairs)],
        "rare": rare, "non_rare": [h for h in range(len(vocab)) if h not in set(rare)],
    }
    path.write_text(json.dumps(data))


def _list_action(vocab: Vocabulary) -> np.ndarray:
    dt = [(f, object) for f in ("nname", "vname", "vname_ing", "syn", "def", "synset", "add_def")]
    arr = np.zeros((len(vocab), 1), dtype=dt)
    for h in range(len(vocab)):
        c = vocab[h]
        arr[h, 0] = (c.object, c.verb, c.verb_ing, c.verb, "", "", "")
    return arr

"""Raw HICO / HICO-DET annotations + images -> the ``images``, ``pairs``, ``classes`` and ``rejects`` tables.

Every input image ends up either in ``images`` or in ``rejects`` with the reason; so does every
annotated pair. Ids become 0-based here, once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline import schemas, storage
from pipeline.data.hico import AnnotationError, read_anno_mat
from pipeline.data.hicodet import DetImage, read_anno_bbox_mat, read_instances_json
from pipeline.data.images import check_images
from pipeline.vocab import Vocabulary

log = logging.getLogger(__name__)
SPLITS = ("train", "test")


@dataclass
class Sources:
    """Where the raw dataset lives. Paths are relative to ``root`` (a local path or fsspec URI)."""
    root: str
    hico_anno: str = ""          # anno.mat; "" derives image labels from the boxes
    hicodet_train: str = ""      # instances_train2015.json or anno_bbox.mat; "" for none
    hicodet_test: str = ""
    train_images: str = "images/train2015"
    test_images: str = "images/test2015"


@dataclass
class Prepared:
    images: pa.Table
    pairs: pa.Table
    classes: pa.Table
    rejects: pa.Table


def _read_boxes(uri: str, split: str, num_classes: int) -> tuple[list[DetImage], list[int] | None]:
    if uri.endswith(".mat"):
        images, rare = read_anno_bbox_mat(uri, split), None
    else:
        images, rare = read_instances_json(uri, num_classes)
    for img in images:
        for h in img.hois:
            if not 0 <= h < num_classes:
                raise AnnotationError(f"{uri}: image {img.file_name} has HOI id {h} outside [0, {num_classes})")
    return images, rare


def _box_problem(box: list[float], width: int, height: int) -> str | None:
    x1, y1, x2, y2 = box
    if not np.all(np.isfinite(box)):
        return "non-finite box"
    if x2 <= x1 or y2 <= y1:
        return f"inverted or empty box {box}"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"box {box} lies outside the {width}x{height} image"
    return None


def prepare_dataset(src: Sources, vocab: Vocabulary, val_fraction: float = 0.1, seed: int = 0,
                    decode_images: bool = True, workers: int = 8) -> Prepared:
    """Builds the four tables; see the module docstring. Raises AnnotationError for malformed files."""
    if not (src.hico_anno or src.hicodet_train or src.hicodet_test):
        raise ValueError("prepare: give at least one of hico_anno, hicodet_train, hicodet_test")
    storage.check_access(src.root, "prepare.root")  # driver, credentials, bucket: fail in seconds
    C = len(vocab)
    labels = read_anno_mat(storage.join(src.root, src.hico_anno), vocab) if src.hico_anno else {}
    rejects: list[tuple[str, str, str]] = []
    rare_from_file = None
    rows: dict[str, list] = {k: [] for k in schemas.IMAGES.names}
    pair_rows: dict[str, list] = {k: [] for k in schemas.PAIRS.names}
    next_id = 0
    for split in SPLITS:
        det_file = getattr(src, f"hicodet_{split}")
        det_uri = storage.join(src.root, det_file) if det_file else ""
        dets, rare = _read_boxes(det_uri, split, C) if det_file else ([], None)
        rare_from_file = rare if rare is not None else rare_from_file
        det_by_name = {}
        for d in dets:
            if d.file_name in det_by_name:
                rejects.append((det_uri, d.file_name, "duplicate image name in the box annotations"))
            else:
                det_by_name[d.file_name] = d
        lab = labels.get(split)
        names = lab.file_names if lab else list(det_by_name)
        label_src = storage.join(src.root, src.hico_anno) if lab else det_uri
        seen: dict[str, int] = {}
        keep: list[int] = []
        for i, name in enumerate(names):
            if name in seen:
                rejects.append((label_src, name, f"duplicate image name (first at position {seen[name]})"))
            else:
                seen[name] = i
                keep.append(i)
        if lab:
            for name in det_by_name.keys() - seen.keys():
                rejects.append((det_uri, name, "image has boxes but is not in the HICO label file"))
        folder = getattr(src, f"{split}_images")
        uris = [storage.join(src.root, folder, names[i]) for i in keep]
        expected = [(det_by_name[names[i]].width, det_by_name[names[i]].height)
                    if names[i] in det_by_name else None for i in keep]
        checks = check_images(uris, expected, decode_images, workers, desc=f"checking {split} images")
        for i, uri, chk in zip(keep, uris, checks):
            name = names[i]
            det = det_by_name.get(name)
            if chk.problem:
                n_pairs = len(det.hois) if det else 0
                rejects.append((uri, name, chk.problem + (f" ({n_pairs} pairs dropped with it)" if n_pairs else "")))
                continue
            image_id = next_id
            next_id += 1
            if lab:
                row = lab.labels[i]
                pos, neg, amb = (np.flatnonzero(row == v).tolist() for v in (1, -1, 0))
            else:
                pos = sorted(set(det.hois)) if det else []
                objs = {int(vocab.hoi_object[h]) for h in pos}
                neg = sorted(h for o in objs for h in vocab.object_to_hois[o].tolist() if h not in pos)
                amb = []
            for k, v in zip(schemas.IMAGES.names, (image_id, split, name, uri, chk.width, chk.height, pos, neg, amb)):
                rows[k].append(v)
            for h, hb, ob in zip(*(det.hois, det.human_boxes, det.object_boxes)) if det else ():
                problem = _box_problem(hb, chk.width, chk.height) or _box_problem(ob, chk.width, chk.height)
                if problem:
                    rejects.append((det_uri, f"{name} hoi {h}", problem))
                    continue
                for k, v in zip(schemas.PAIRS.names, (image_id, h, hb, ob)):
                    pair_rows[k].append(v)
    images = schemas.conform(pa.table(rows), schemas.IMAGES, "images")
    images = _hold_out_val(images, val_fraction, seed)
    pairs = schemas.conform(pa.table(pair_rows), schemas.PAIRS, "pairs")
    classes = build_classes(vocab, images, pairs, rare_from_file)
    rejects_t = schemas.conform(pa.table({k: list(v) for k, v in zip(schemas.REJECTS.names, zip(*rejects))})
                                if rejects else schemas.REJECTS.empty_table(), schemas.REJECTS, "rejects")
    return Prepared(images, pairs, classes, rejects_t)


def _hold_out_val(images: pa.Table, fraction: float, seed: int) -> pa.Table:
    if not 0 <= fraction < 1:
        raise ValueError(f"prepare.val_fraction must be in [0, 1), got {fraction}")
    split = np.asarray(images.column("split").to_pylist(), dtype=object)
    train = np.flatnonzero(split == "train")
    n_val = int(round(fraction * len(train)))
    val = np.random.default_rng(seed).choice(train, size=n_val, replace=False)
    split[val] = "val"
    return images.set_column(images.schema.get_field_index("split"), "split", pa.array(split, pa.string()))


def build_classes(vocab: Vocabulary, images: pa.Table, pairs: pa.Table,
                  rare_from_file: list[int] | None) -> pa.Table:
    """The 600-row class table with training counts and the HICO-DET rare flag.

    ``rare`` is "fewer than 10 training pairs" when training boxes are present, else the file's
    official list (HICO-DET's 138 classes), else the vocabulary's copy of that list.
    """
    C = len(vocab)
    split = np.asarray(images.column("split").to_pylist())
    trainval = np.isin(split, ["train", "val"])
    pos_lists = images.column("positives").to_pylist()
    n_images = np.zeros(C, dtype=np.int64)
    for lst, tv in zip(pos_lists, trainval):
        if tv:
            n_images[lst] += 1
    train_ids = set(images.column("image_id").to_numpy()[trainval].tolist())
    pair_img = pairs.column("image_id").to_numpy()
    in_train = np.fromiter((i in train_ids for i in pair_img), dtype=bool, count=len(pair_img))
    n_pairs = np.bincount(pairs.column("hoi").to_numpy()[in_train].astype(np.int64), minlength=C)
    if in_train.any():
        rare = n_pairs < 10
    else:
        rare = np.isin(np.arange(C), sorted(rare_from_file if rare_from_file is not None else vocab.hicodet_rare))
    cols = {
        "hoi": np.arange(C), "verb": [vocab[h].verb for h in range(C)],
        "verb_ing": [vocab[h].verb_ing for h in range(C)], "object": [vocab[h].object for h in range(C)],
        "verb_idx": vocab.hoi_verb, "object_idx": vocab.hoi_object,
        "coco80": vocab.object_to_coco80[vocab.hoi_object], "n_train_images": n_images,
        "n_train_pairs": n_pairs, "rare": rare,
    }
    return schemas.conform(pa.table(cols), schemas.CLASSES, "classes")

"""The HICO adapter: HICO ``anno.mat`` image labels and HICO-DET boxes (``instances_*.json`` or
``anno_bbox.mat``) + images -> the pipeline's tables (:func:`pipeline.datasets.build.assemble`).

HICO's facts live here and in :mod:`pipeline.classes.hico_vocab`, nowhere downstream: the 600 classes
with their verbs, objects and COCO objects, HICO-DET's official rare list (used when no training boxes are
given), and DEFR's Few@1 list (the ``few1_defr`` subset of the classes table). Every input image ends up
either in ``images`` or in ``rejects`` with the reason; so does every annotated pair. Ids become 0-based
here, once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.datasets.build import Candidate, DatasetInput, Reject, SplitInput
from pipeline.datasets.files import AnnotationError
from pipeline.storage.names import path_inside
from pipeline.datasets.hico_anno import read_anno_mat
from pipeline.datasets.hicodet import DetImage, read_anno_bbox_mat, read_instances_json
from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary

SPLITS = ("train", "test")
FEW1_DEFR = "few1_defr"


@dataclass
class HicoFiles:
    """Where the raw dataset lives. Paths are relative to ``root`` (a local path or fsspec URI)."""
    root: str
    anno: str = ""               # anno.mat; "" derives image labels from the boxes
    hicodet_train: str = ""      # instances_train2015.json or anno_bbox.mat; "" for none
    hicodet_test: str = ""
    train_images: str = "images/train2015"
    test_images: str = "images/test2015"


def _read_boxes(uri: str, split: str, num_classes: int) -> tuple[list[DetImage], list[int] | None]:
    if not storage.exists(uri):
        raise AnnotationError(f"{uri}: file not found (prepare.hico.hicodet_{split})")
    if uri.endswith(".mat"):
        images, rare = read_anno_bbox_mat(uri, split), None
    else:
        images, rare = read_instances_json(uri, num_classes)
    for img in images:
        for h in img.hois:
            if not 0 <= h < num_classes:
                raise AnnotationError(f"{uri}: image {img.file_name} has HOI id {h} outside [0, {num_classes})")
    return images, rare


def hico_classes(vocab: Vocabulary | None = None) -> pa.Table:
    """The static columns of HICO's 600 classes (name "<verb> <object>", prompt fields, HICO and COCO
    object ids, DEFR's Few@1 list as the ``few1_defr`` subset)."""
    vocab = vocab or hico_vocabulary()
    C = len(vocab)
    return pa.table({
        "hoi": np.arange(C), "name": [f"{vocab[h].verb} {vocab[h].object}" for h in range(C)],
        "verb": [vocab[h].verb for h in range(C)], "verb_ing": [vocab[h].verb_ing for h in range(C)],
        "object": [vocab[h].object for h in range(C)], "verb_idx": vocab.hoi_verb, "object_idx": vocab.hoi_object,
        "coco80": vocab.object_to_coco80[vocab.hoi_object],
        "subsets": [[FEW1_DEFR] if h in vocab.defr_few1 else [] for h in range(C)],
    })


def read_hico(files: HicoFiles, vocab: Vocabulary | None = None) -> DatasetInput:
    """Reads the annotation files into candidates per split (images are checked later, by ``assemble``).

    Raises:
        AnnotationError: a malformed file (the message names the file and the field).
        ValueError: no annotation file given.
    """
    if not (files.anno or files.hicodet_train or files.hicodet_test):
        raise ValueError("prepare.hico: give at least one of anno, hicodet_train, hicodet_test")
    vocab = vocab or hico_vocabulary()
    C = len(vocab)
    anno_uri = storage.join(files.root, files.anno) if files.anno else ""
    if anno_uri and not storage.exists(anno_uri):
        raise AnnotationError(f"{anno_uri}: file not found (prepare.hico.anno; '' derives the labels from the boxes)")
    labels = read_anno_mat(anno_uri, vocab) if files.anno else {}
    rare_from_file = None
    splits = []
    for split in SPLITS:
        rejects: list[Reject] = []
        det_file = getattr(files, f"hicodet_{split}")
        det_uri = storage.join(files.root, det_file) if det_file else ""
        dets, rare = _read_boxes(det_uri, split, C) if det_file else ([], None)
        rare_from_file = rare if rare is not None else rare_from_file
        det_by_name: dict[str, DetImage] = {}
        for d in dets:
            if d.file_name in det_by_name:
                rejects.append(Reject(det_uri, d.file_name, "duplicate image name in the box annotations", split))
            else:
                det_by_name[d.file_name] = d
        lab = labels.get(split)
        names = lab.file_names if lab else list(det_by_name)
        label_src = storage.join(files.root, files.anno) if lab else det_uri
        seen: dict[str, int] = {}
        keep: list[int] = []
        for i, name in enumerate(names):
            if name in seen:
                rejects.append(Reject(label_src, name, f"duplicate image name (first at position {seen[name]})",
                                      split))
            elif name in det_by_name and det_by_name[name].problem:
                seen[name] = i
                rejects.append(Reject(det_uri, name, det_by_name[name].problem, split))
            else:
                seen[name] = i
                keep.append(i)
        if lab:
            for name in det_by_name.keys() - seen.keys():
                rejects.append(Reject(det_uri, name, "image has boxes but is not in the HICO label file", split))
        folder = storage.join(files.root, getattr(files, f"{split}_images"))
        candidates = []
        for i in keep:
            name = names[i]
            det = det_by_name.get(name)
            uri, problem = path_inside(folder, name)
            if problem:  # a name that leads out of the images folder is never opened
                n = len(det.hois) if det else 0
                rejects.append(Reject(label_src, name, f"{problem} (entry {i} of the file names)"
                                      + (f" ({n} pairs dropped with it)" if n else ""), split))
                continue
            if lab:
                row = lab.labels[i]
                pos, neg, amb = (np.flatnonzero(row == v).tolist() for v in (1, -1, 0))
            else:
                pos = sorted(set(det.hois)) if det else []
                objs = {int(vocab.hoi_object[h]) for h in pos}
                neg = sorted(h for o in objs for h in vocab.object_to_hois[o].tolist() if h not in pos)
                amb = []
            candidates.append(Candidate(
                name, uri, (det.width, det.height) if det else None,
                pos, neg, amb, list(zip(det.hois, det.human_boxes, det.object_boxes)) if det else [], det_uri))
        splits.append(SplitInput(split, candidates, rejects))

    def rare(n_pairs: np.ndarray, has_train_pairs: bool) -> np.ndarray:
        # HICO-DET rare: < 10 training pairs when training boxes are given, else the file's official
        # list (HICO-DET's 138 classes), else the vocabulary's copy of that list.
        if has_train_pairs:
            return n_pairs < 10
        return np.isin(np.arange(C), sorted(rare_from_file if rare_from_file is not None else vocab.hicodet_rare))

    return DatasetInput("hico", splits, hico_classes(vocab), "multi", rare)

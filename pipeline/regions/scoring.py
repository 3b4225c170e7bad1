"""Pair logits -> scored HOI detections (DEFR Sec. 3.4, with the authors' release's score formula).

score(pair, hoi) = sigmoid(logit) * s_h^p * s_o^p on the HOIs of the object box's category, 0 on all
other HOIs. The paper's text multiplies by the detection scores (p = 1); the authors' release uses
p = 2.8, which ranks confident detections higher (a large gain in HICO-DET mAP for weak detectors).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline import schemas
from pipeline.vocab import Vocabulary


def hoi_allowed(object_label: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """[P, C] bool: the HOIs whose object is the pair's object category (labels are COCO-80)."""
    object_label = np.asarray(object_label, dtype=np.int64)
    n_coco = len(vocab.coco80_to_object)
    bad = np.flatnonzero((object_label < 0) | (object_label >= n_coco))
    if len(bad):
        raise ValueError(f"object label {object_label[bad[0]]} is not a COCO-80 contiguous label "
                         f"[0, {n_coco})")
    table = np.zeros((n_coco, len(vocab)), dtype=bool)
    for coco, obj in enumerate(vocab.coco80_to_object):
        table[coco, vocab.object_to_hois[obj]] = True
    return table[object_label]


def pair_scores(logits: torch.Tensor | np.ndarray, human_score: np.ndarray, object_score: np.ndarray,
                object_label: np.ndarray, vocab: Vocabulary, power: float = 1.0) -> np.ndarray:
    """[P, C] float32 scores: sigmoid(logit) * s_h^power * s_o^power, 0 outside the object's HOIs."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    if logits.ndim != 2 or logits.shape[1] != len(vocab):
        raise ValueError(f"pair logits have shape {tuple(logits.shape)}; expected [P, {len(vocab)}]")
    prob = torch.sigmoid(logits).numpy()
    det = (np.asarray(human_score, np.float64) * np.asarray(object_score, np.float64)) ** power
    return (prob * det[:, None] * hoi_allowed(object_label, vocab)).astype(np.float32)


def top_detections(image_id: int, scores: np.ndarray, human_box: np.ndarray, object_box: np.ndarray,
                   top_k: int) -> pa.Table:
    """The ``top_k`` highest (pair, HOI) scores of one image as HOI_DETECTIONS rows (zeros dropped).

    Boxes stay in original-image pixels: masks were computed from them, they were never resized.
    """
    flat = scores.reshape(-1)
    nonzero = np.flatnonzero(flat > 0)
    k = min(top_k, len(nonzero)) if top_k > 0 else len(nonzero)
    best = nonzero[np.argsort(-flat[nonzero], kind="stable")[:k]]
    pair, hoi = np.divmod(best, scores.shape[1])
    return pa.table({
        "image_id": pa.array(np.full(len(best), image_id, dtype=np.int64)),
        "hoi": pa.array(hoi.astype(np.int16)),
        "human_box": pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray(human_box, np.float32)[pair].reshape(-1)), 4),
        "object_box": pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray(object_box, np.float32)[pair].reshape(-1)), 4),
        "score": pa.array(flat[best].astype(np.float32)),
    }, schema=schemas.HOI_DETECTIONS)


def empty_detections() -> pa.Table:
    return schemas.HOI_DETECTIONS.empty_table()

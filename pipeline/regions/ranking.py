"""Pair logits -> scored HOI detections (DEFR Sec. 3.4, with the authors' release's score formula).

score(pair, class) = sigmoid(logit) * s_h^p * s_o^p on the classes whose object is the object box's
category (the model's own label space, ``ClassSpace.allowed``), 0 on all other classes. The paper's text
multiplies by the detection scores (p = 1); the authors' release uses p = 2.8, which ranks confident
detections higher (a large gain in HICO-DET mAP for weak detectors).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline import schemas
from pipeline.classes.space import ClassSpace


def pair_scores(logits: torch.Tensor | np.ndarray, human_score: np.ndarray, object_score: np.ndarray,
                object_label: np.ndarray, classes: ClassSpace, power: float = 1.0) -> np.ndarray:
    """[P, C] float32 scores: sigmoid(logit) * s_h^power * s_o^power, 0 outside the object's classes.

    Args:
        logits: [P, C] pair logits of the model.
        human_score, object_score: [P] detection scores.
        object_label: [P] COCO-80 label of each pair's object box.
        classes: the model's label space (:func:`pipeline.classes.model_classes`): which classes involve
            which COCO object (``ClassSpace.allowed``).
        power: p.

    Raises:
        ValueError: logits not [P, len(classes)], or labels outside COCO-80.
    """
    logits = torch.as_tensor(logits, dtype=torch.float64)
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        raise ValueError(f"pair logits have shape {tuple(logits.shape)}; expected [P, {len(classes)}] "
                         "(one column per class of the model)")
    prob = torch.sigmoid(logits).numpy()
    det = (np.asarray(human_score, np.float64) * np.asarray(object_score, np.float64)) ** power
    return (prob * det[:, None] * classes.allowed(object_label)).astype(np.float32)


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

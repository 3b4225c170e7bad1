"""From the pipeline's tables to metrics, per-class results and curves (library side of stages/evaluate)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.labels import label_matrix
from pipeline.metrics import hico_classification_map, hicodet_map, subset_map
from pipeline.metrics.ap import precision_recall
from pipeline.vocab import NUM_HOIS, hico_vocabulary


def pct(x: float) -> float | None:
    """A fraction as a percent rounded to 4 decimals; None for NaN (JSON has no NaN)."""
    return None if x is None or np.isnan(x) else round(float(x) * 100, 4)


@dataclass
class ClassificationEval:
    metrics: dict
    per_class: np.ndarray
    per_class_known_object: np.ndarray
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def curve(self, hoi: int) -> tuple[np.ndarray, np.ndarray]:
        """(recall, precision) of class ``hoi`` in the default setting (ambiguous images removed)."""
        keep = self.labels[:, hoi] != 0
        return precision_recall(self.scores[keep, hoi], self.labels[keep, hoi] == 1)


def test_split(images: pa.Table) -> pa.Table:
    """The test split, sorted by image_id; raises when there is none."""
    test = images.filter(pc.equal(images.column("split"), "test"))
    if test.num_rows == 0:
        raise ValueError("images table has no row with split == 'test'")
    return test.sort_by("image_id")


def evaluate_classification(images: pa.Table, classes: pa.Table, image_scores: pa.Table) -> ClassificationEval:
    """HICO mAP (default and known object) and Few@1/5/10 of ``image_scores`` on the test images.

    Raises:
        ValueError: a score row for an image that is not a test image, a test image without scores,
            a duplicated image, or a score vector whose length is not the number of classes.
    """
    test = test_split(images)
    ids = np.asarray(test.column("image_id").to_numpy())
    score_ids = np.asarray(image_scores.column("image_id").to_numpy())
    lengths = np.asarray(image_scores.column("scores").combine_chunks().value_lengths())
    if (lengths != NUM_HOIS).any():
        r = int(np.argmax(lengths != NUM_HOIS))
        raise ValueError(f"image_scores row {r}: {lengths[r]} scores, expected {NUM_HOIS}")
    uniq, counts = np.unique(score_ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"image_scores: image_id {uniq[counts > 1][0]} appears {counts.max()} times")
    unknown = ~np.isin(score_ids, ids)
    if unknown.any():
        r = int(np.argmax(unknown))
        raise ValueError(f"image_scores row {r}: image_id {score_ids[r]} is not a test image")
    missing = ~np.isin(ids, score_ids)
    if missing.any():
        raise ValueError(f"image_scores lacks {missing.sum()} of {len(ids)} test images "
                         f"(first image_id {ids[missing][0]}); was predict run on the whole test split?")
    flat = image_scores.column("scores").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    scores = np.asarray(flat, dtype=np.float64).reshape(-1, NUM_HOIS)
    if not np.isfinite(scores).all():
        r, c = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"image_scores row {r} (image_id {score_ids[r]}): score of HOI {c} is {scores[r, c]}; "
                         "scores must be finite")
    scores = scores[np.argsort(score_ids)]
    labels = label_matrix(test)
    hoi_object = hico_vocabulary().hoi_object
    default = hico_classification_map(scores, labels)
    known = hico_classification_map(scores, labels, known_object=True, hoi_object=hoi_object)
    counts_train = class_column(classes, "n_train_images")
    vocab = hico_vocabulary()
    metrics = {"map": pct(default.map), "known_object_map": pct(known.map)}
    n = {"evaluated": default.num_evaluated}
    for k in (1, 5, 10):
        value, n[f"few{k}"] = subset_map(default.per_class, vocab.few_shot(k, counts_train))
        metrics[f"few{k}"] = pct(value)
    value, n["few1_defr"] = subset_map(default.per_class, sorted(vocab.defr_few1))
    metrics["few1_defr"] = pct(value)
    metrics["num_classes"] = n
    metrics["num_test_images"] = int(len(ids))
    return ClassificationEval(metrics, default.per_class, known.per_class, scores, labels)


def evaluate_detection(images: pa.Table, pairs: pa.Table, classes: pa.Table, hoi_detections: pa.Table):
    """HICO-DET mAP Full/Rare/Non-rare, default and known object; returns (metrics, default, known)."""
    test = test_split(images)
    ids = test.column("image_id")
    gt = pairs.filter(pc.is_in(pairs.column("image_id"), value_set=ids))
    rare = class_column(classes, "rare").astype(bool)
    # Known object as the official eval_one.m: images with a positive image label of any HOI of the object.
    rows, hois = np.nonzero(label_matrix(test) == 1)
    object_images = (ids.to_numpy()[rows], hico_vocabulary().hoi_object[hois])
    default = hicodet_map(hoi_detections, gt, rare, image_ids=ids.to_numpy())
    known = hicodet_map(hoi_detections, gt, rare, known_object=True, image_ids=ids.to_numpy(),
                        object_images=object_images)
    metrics = {
        "default": {k: pct(getattr(default, k)) for k in ("full", "rare", "non_rare")},
        "known_object": {k: pct(getattr(known, k)) for k in ("full", "rare", "non_rare")},
        "num_classes": default.num_evaluated,
        "num_detections": int(hoi_detections.num_rows),
        "num_test_pairs": int(gt.num_rows),
    }
    return metrics, default, known


def class_column(classes: pa.Table, column: str) -> np.ndarray:
    """A classes.parquet column indexed by HOI id (all 600 rows required)."""
    hoi = np.asarray(classes.column("hoi").to_numpy(), dtype=np.int64)
    if sorted(hoi.tolist()) != list(range(NUM_HOIS)):
        raise ValueError(f"classes table must hold each HOI id 0..{NUM_HOIS - 1} once; it has {len(hoi)} rows")
    out = np.empty(NUM_HOIS, dtype=np.asarray(classes.column(column).to_numpy(zero_copy_only=False)).dtype)
    out[hoi] = classes.column(column).to_numpy(zero_copy_only=False)
    return out

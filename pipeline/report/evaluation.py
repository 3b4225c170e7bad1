"""From the pipeline's tables to metrics, per-class results and curves (library side of stages/evaluate).

The label space is the :class:`~pipeline.classes.space.ClassSpace` of ``classes.parquet``: the class
names, the label mode (multi-label: HICO's protocol; single-label: both MPII conventions), Few@k from the
training counts, the rare split and other class subsets where the dataset defines them, and the object of
each class (the known-object settings, HOI detection). Nothing here knows HICO's 600 classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.classes.space import ClassSpace
from pipeline.datasets.labels import label_matrix
from pipeline.datasets.splits import test_pairs, test_split
from pipeline.metrics import hico_classification_map, hicodet_map, seen_unseen_map, single_label_map, subset_map
from pipeline.metrics.ap import precision_recall
from pipeline.metrics.single_label import softmax

FEW_SHOT = (1, 5, 10)
CHANCE_DRAWS = 20   # seeded random-score draws whose mean AP is the chance level of the unseen classes
CONVENTIONS_NOTE = ("map = map_all_classes (DEFR authors' code: softmax, 11-point AP, mean over all classes, "
                    "0 without a positive); map_with_positive (Girdhar et al.'s code: softmax, all-points AP, "
                    "mean over the classes with a positive). Which one the DEFR paper's Table 4 used is not "
                    "published.")


def pct(x: float) -> float | None:
    """A fraction as a percent rounded to 4 decimals; None for NaN (JSON has no NaN)."""
    return None if x is None or np.isnan(x) else round(float(x) * 100, 4)


@dataclass
class ClassificationEval:
    """Metrics (percent), per-class AP columns (fractions, NaN = not evaluated) and the curves."""

    metrics: dict
    per_class: np.ndarray                        # the AP of the long-tail plot and the curves
    columns: dict[str, np.ndarray]               # per-class CSV columns, e.g. cls_ap, cls_ap_known_object
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def curve(self, hoi: int) -> tuple[np.ndarray, np.ndarray]:
        """(recall, precision) of class ``hoi`` (default setting: ambiguous images removed)."""
        keep = self.labels[:, hoi] != 0
        return precision_recall(self.scores[keep, hoi], self.labels[keep, hoi] == 1)


def score_matrix(test: pa.Table, image_scores: pa.Table, num_classes: int) -> np.ndarray:
    """[N, C] scores in the test table's row order, checked against the test split.

    Raises:
        ValueError: a score row for an image that is not a test image, a test image without scores,
            a duplicated image, a score vector whose length is not the number of classes, a non-finite score.
    """
    ids = np.asarray(test.column("image_id").to_numpy())
    score_ids = np.asarray(image_scores.column("image_id").to_numpy())
    lengths = np.asarray(image_scores.column("scores").combine_chunks().value_lengths())
    if (lengths != num_classes).any():
        r = int(np.argmax(lengths != num_classes))
        raise ValueError(f"image_scores row {r}: {lengths[r]} scores, expected {num_classes} (the classes table's "
                         "rows; was the model trained on another dataset?)")
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
    scores = np.asarray(flat, dtype=np.float64).reshape(-1, num_classes)
    if not np.isfinite(scores).all():
        r, c = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"image_scores row {r} (image_id {score_ids[r]}): score of HOI {c} is {scores[r, c]}; "
                         "scores must be finite")
    return scores[np.argsort(score_ids)]


def _few_shot(metrics: dict, n: dict, per_class: np.ndarray, space: ClassSpace) -> None:
    """Few@1/5/10 (classes with 1..k positive training images) and the dataset's own class subsets."""
    counts = space.column("n_train_images")
    counts = np.zeros(len(space)) if counts is None else counts
    for k in FEW_SHOT:
        value, n[f"few{k}"] = subset_map(per_class, np.flatnonzero((counts >= 1) & (counts <= k)))
        metrics[f"few{k}"] = pct(value)
    for name, members in space.subsets.items():
        value, n[name] = subset_map(per_class, members)
        metrics[name] = pct(value)


def evaluate_classification(images: pa.Table, space: ClassSpace, image_scores: pa.Table) -> ClassificationEval:
    """mAP of ``image_scores`` on the test images: HICO's protocol (default and known object) for a
    multi-label dataset, both published conventions for a single-label one; Few@1/5/10 either way."""
    test = test_split(images)
    scores = score_matrix(test, image_scores, len(space))
    labels = label_matrix(test, len(space))
    if space.label_mode == "single":
        return _single_label(test, scores, labels, space)
    default = hico_classification_map(scores, labels)
    hoi_object = space.object_index
    known = (hico_classification_map(scores, labels, known_object=True, hoi_object=hoi_object)
             if hoi_object is not None else None)
    metrics = {"map": pct(default.map), "known_object_map": pct(known.map) if known else None}
    n = {"evaluated": default.num_evaluated}
    _few_shot(metrics, n, default.per_class, space)
    metrics["num_classes"] = n
    metrics["num_test_images"] = int(test.num_rows)
    if known is None:
        metrics["notes"] = {"known_object_map": "not evaluated: not every class has an object"}
    if space.zero_shot is not None:
        metrics["zero_shot"] = zero_shot_metrics(space, default.per_class, *_classification_chance(labels, space))
    columns = {"cls_ap": default.per_class,
               "cls_ap_known_object": known.per_class if known else np.full(len(space), np.nan)}
    return ClassificationEval(metrics, default.per_class, columns, scores, labels)


def _single_label(test: pa.Table, scores: np.ndarray, labels: np.ndarray, space: ClassSpace) -> ClassificationEval:
    positives = labels == 1
    per_image = positives.sum(axis=1)
    if (per_image != 1).any():
        r = int(np.flatnonzero(per_image != 1)[0])
        raise ValueError(f"test image_id {test.column('image_id')[r].as_py()} has {per_image[r]} positive classes; "
                         "a single-label dataset has exactly one per image")
    result = single_label_map(scores, positives.argmax(axis=1), len(space))
    metrics = {"map": pct(result.map_all_classes), "map_all_classes": pct(result.map_all_classes),
               "map_with_positive": pct(result.map_with_positive), "accuracy": pct(result.accuracy)}
    n = {"all": result.num_classes, "with_positive": result.num_with_positive}
    _few_shot(metrics, n, result.per_class_11pt, space)
    metrics["num_classes"] = n
    metrics["num_test_images"] = int(test.num_rows)
    metrics["note"] = CONVENTIONS_NOTE
    if space.zero_shot is not None:
        metrics["zero_shot"] = zero_shot_metrics(space, result.per_class_11pt)
    # Curves and the long-tail plot rank by the softmax, as both conventions do.
    probs = softmax(scores)
    columns = {"cls_ap": result.per_class_11pt, "cls_ap_all_points": result.per_class_all_points}
    return ClassificationEval(metrics, result.per_class_11pt, columns, probs, labels)


def detection_not_applicable(space: ClassSpace, test_pairs: int, detections_meta: dict | None = None) -> str | None:
    """Why HOI detection cannot be evaluated on this dataset or run, or None when it can."""
    if detections_meta and detections_meta.get("not_applicable"):
        return str(detections_meta["not_applicable"])
    if not space.has_objects:
        return ("no class has an object category (classes.parquet coco80 is empty), so no human-object box "
                "pair can score a class")
    if test_pairs == 0:
        return "the dataset has no ground-truth human-object pairs (boxes) in its test split"
    return None


def evaluate_detection(images: pa.Table, pairs: pa.Table, space: ClassSpace, hoi_detections: pa.Table):
    """HOI detection mAP (HICO-DET protocol) Full / Rare / Non-rare, default and known object.

    Returns:
        (metrics, default result, known-object result or None). Rare / non-rare are None where the
        dataset defines no rare split; known object None unless every class has an object.
    """
    test = test_split(images)
    ids = test.column("image_id")
    gt = test_pairs(images, pairs)
    rare = space.rare
    rare_mask = np.zeros(len(space), bool) if rare is None else rare
    default = hicodet_map(hoi_detections, gt, rare_mask, len(space), image_ids=ids.to_numpy())
    hoi_object = space.object_index
    known = None
    if hoi_object is not None:
        # Known object as the official eval_one.m: images with a positive image label of any class of the object.
        rows, hois = np.nonzero(label_matrix(test, len(space)) == 1)
        known = hicodet_map(hoi_detections, gt, rare_mask, len(space), known_object=True, image_ids=ids.to_numpy(),
                            hoi_object=hoi_object, object_images=(ids.to_numpy()[rows], hoi_object[hois]))
    splits = ("full", "rare", "non_rare") if rare is not None else ("full",)

    def means(result):
        return {k: pct(getattr(result, k)) if k in splits else None for k in ("full", "rare", "non_rare")}

    metrics = {
        "default": means(default),
        "known_object": means(known) if known else {k: None for k in ("full", "rare", "non_rare")},
        "num_classes": default.num_evaluated if rare is not None else {"full": default.num_evaluated["full"],
                                                                       "rare": 0, "non_rare": 0},
        "num_detections": int(hoi_detections.num_rows),
        "num_test_pairs": int(gt.num_rows),
    }
    if space.zero_shot is not None:
        metrics["zero_shot"] = zero_shot_metrics(space, default.per_class, _detection_chance(
            hoi_detections, gt, space, ids.to_numpy()))
    notes = {}
    if rare is None:
        notes["rare"] = "the dataset defines no rare split"
    if known is None:
        notes["known_object"] = "not evaluated: not every class has an object"
    if hoi_detections.num_rows == 0:
        notes["detections"] = "no HOI detections: every class with test pairs has AP 0"
    if notes:
        metrics["notes"] = notes
    return metrics, default, known


def zero_shot_metrics(space: ClassSpace, per_class: np.ndarray, chance: float | None = None,
                      positive_fraction: float | None = None) -> dict:
    """Full / Seen / Unseen mAP (percent) of the zero-shot setting the dataset was prepared in, with the
    chance level of its unseen classes (the mean AP of :data:`CHANCE_DRAWS` seeded random rankings)."""
    zs = space.zero_shot
    means = seen_unseen_map(per_class, zs.mask(len(space)))
    out = {"setting": zs.setting, **{k: pct(v) for k, (v, _) in means.items()}, "chance_unseen": pct(chance)}
    if positive_fraction is not None:
        out["positive_fraction_unseen"] = pct(positive_fraction)
    return {**out, "num_classes": {k: n for k, (_, n) in means.items()}, "source": zs.source}


def _classification_chance(labels: np.ndarray, space: ClassSpace) -> tuple[float, float]:
    """(mean AP of random scores, mean fraction of positives among the ranked images) over the unseen
    classes with a test positive. The 11-point AP of a random ranking is on average above the fraction of
    positives (its interpolation keeps the best precision reached), most for classes with few positives."""
    cols = np.asarray(space.zero_shot.unseen, dtype=np.int64)
    lab = labels[:, cols]
    has = (lab == 1).any(axis=0)
    if not has.any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(0)
    draws = [hico_classification_map(rng.random(lab.shape), lab).per_class for _ in range(CHANCE_DRAWS)]
    fraction = (lab == 1).sum(axis=0) / np.maximum((lab != 0).sum(axis=0), 1)
    return float(np.mean(draws, axis=0)[has].mean()), float(fraction[has].mean())


def _detection_chance(hoi_detections: pa.Table, gt: pa.Table, space: ClassSpace, image_ids: np.ndarray) -> float:
    """Mean AP over the unseen classes with test pairs when their detections (the same boxes) are ranked
    by random scores instead of the model's."""
    import warnings

    import pyarrow.compute as pc

    unseen = space.zero_shot.mask(len(space))
    hoi = hoi_detections.column("hoi")
    det = hoi_detections.filter(pc.is_in(hoi, value_set=pa.array(np.flatnonzero(unseen), hoi.type)))
    score = det.schema.field("score")
    rng = np.random.default_rng(0)
    draws = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # no detection of an unseen class: AP 0, said by the metrics
        for _ in range(CHANCE_DRAWS):
            random = det.set_column(det.schema.get_field_index("score"), score,
                                    pa.array(rng.random(det.num_rows), score.type))
            draws.append(hicodet_map(random, gt, np.zeros(len(space), bool), len(space),
                                     image_ids=image_ids).per_class[unseen])
    values = np.mean(draws, axis=0)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")

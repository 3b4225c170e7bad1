"""From the pipeline's tables to metrics, per-class results and curves (library side of stages/evaluate).

The label space comes from ``classes.parquet`` (:class:`LabelSpace`): the class names, the label mode
(multi-label: HICO's protocol; single-label: both MPII conventions), Few@k from the training counts, the
rare split and other class subsets where the dataset defines them, and the object of each class (the
known-object settings, HOI detection). Nothing here knows HICO's 600 classes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.classes import check_classes
from pipeline.data.labels import label_matrix
from pipeline.metrics import hico_classification_map, hicodet_map, single_label_map, subset_map
from pipeline.metrics.ap import precision_recall
from pipeline.metrics.single_label import softmax

FEW_SHOT = (1, 5, 10)
CONVENTIONS_NOTE = ("map = map_all_classes (DEFR authors' code: softmax, 11-point AP, mean over all classes, "
                    "0 without a positive); map_with_positive (Girdhar et al.'s code: softmax, all-points AP, "
                    "mean over the classes with a positive). Which one the DEFR paper's Table 4 used is not "
                    "published.")


def pct(x: float) -> float | None:
    """A fraction as a percent rounded to 4 decimals; None for NaN (JSON has no NaN)."""
    return None if x is None or np.isnan(x) else round(float(x) * 100, 4)


@dataclass
class LabelSpace:
    """What evaluation needs from ``classes.parquet`` (rows in class-id order)."""

    classes: pa.Table
    dataset: str = "hico"
    label_mode: str = "multi"

    @property
    def size(self) -> int:
        return self.classes.num_rows

    @property
    def names(self) -> list[str]:
        return self.classes.column("name").to_pylist()

    def column(self, name: str) -> np.ndarray | None:
        """A column as an array indexed by class id; None when the table lacks it or it is all null."""
        if name not in self.classes.column_names or self.classes.column(name).null_count == self.size:
            return None
        return self.classes.column(name).to_numpy(zero_copy_only=False)

    @property
    def object_index(self) -> np.ndarray | None:
        """[C] index of each class's object (classes sharing an object share it); None unless every class
        has an object (the known-object settings need one per class)."""
        objects = self.classes.column("object").to_pylist() if "object" in self.classes.column_names else [None]
        if None in objects:
            return None
        return np.unique(np.asarray(objects, dtype=object), return_inverse=True)[1].astype(np.int64)

    @property
    def has_objects(self) -> bool:
        """Whether some class has a COCO object, i.e. a human-object box pair can score it."""
        return self.column("coco80") is not None

    @property
    def rare(self) -> np.ndarray | None:
        values = self.column("rare")
        return None if values is None else np.asarray([bool(v) for v in values])

    @property
    def subsets(self) -> dict[str, list[int]]:
        """Named class sets of the dataset (HICO: ``few1_defr``), sorted by name."""
        if "subsets" not in self.classes.column_names:
            return {}
        out: dict[str, list[int]] = {}
        for c, names in enumerate(self.classes.column("subsets").to_pylist()):
            for name in names or []:
                out.setdefault(name, []).append(c)
        return dict(sorted(out.items()))


def read_label_space(path: str) -> LabelSpace:
    """The label space of a prepared dataset; the dataset and label mode come from the table's metadata
    (a table written before datasets had adapters is HICO, multi-label)."""
    meta = storage.parquet_metadata(path) if storage.is_local(path) else {}
    facts = json.loads(meta.get("defr", "{}") or "{}")
    return LabelSpace(check_classes(storage.read_parquet(path), path), facts.get("dataset", "hico"),
                      facts.get("label_mode", "multi"))


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


def test_split(images: pa.Table) -> pa.Table:
    """The test split, sorted by image_id; raises when there is none."""
    test = images.filter(pc.equal(images.column("split"), "test"))
    if test.num_rows == 0:
        raise ValueError("images table has no row with split == 'test'")
    return test.sort_by("image_id")


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


def _few_shot(metrics: dict, n: dict, per_class: np.ndarray, space: LabelSpace) -> None:
    """Few@1/5/10 (classes with 1..k positive training images) and the dataset's own class subsets."""
    counts = space.column("n_train_images")
    counts = np.zeros(space.size) if counts is None else counts
    for k in FEW_SHOT:
        value, n[f"few{k}"] = subset_map(per_class, np.flatnonzero((counts >= 1) & (counts <= k)))
        metrics[f"few{k}"] = pct(value)
    for name, members in space.subsets.items():
        value, n[name] = subset_map(per_class, members)
        metrics[name] = pct(value)


def evaluate_classification(images: pa.Table, space: LabelSpace, image_scores: pa.Table) -> ClassificationEval:
    """mAP of ``image_scores`` on the test images: HICO's protocol (default and known object) for a
    multi-label dataset, both published conventions for a single-label one; Few@1/5/10 either way."""
    test = test_split(images)
    scores = score_matrix(test, image_scores, space.size)
    labels = label_matrix(test, space.size)
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
    columns = {"cls_ap": default.per_class,
               "cls_ap_known_object": known.per_class if known else np.full(space.size, np.nan)}
    return ClassificationEval(metrics, default.per_class, columns, scores, labels)


def _single_label(test: pa.Table, scores: np.ndarray, labels: np.ndarray, space: LabelSpace) -> ClassificationEval:
    positives = labels == 1
    per_image = positives.sum(axis=1)
    if (per_image != 1).any():
        r = int(np.flatnonzero(per_image != 1)[0])
        raise ValueError(f"test image_id {test.column('image_id')[r].as_py()} has {per_image[r]} positive classes; "
                         "a single-label dataset has exactly one per image")
    result = single_label_map(scores, positives.argmax(axis=1), space.size)
    metrics = {"map": pct(result.map_all_classes), "map_all_classes": pct(result.map_all_classes),
               "map_with_positive": pct(result.map_with_positive), "accuracy": pct(result.accuracy)}
    n = {"all": result.num_classes, "with_positive": result.num_with_positive}
    _few_shot(metrics, n, result.per_class_11pt, space)
    metrics["num_classes"] = n
    metrics["num_test_images"] = int(test.num_rows)
    metrics["note"] = CONVENTIONS_NOTE
    # Curves and the long-tail plot rank by the softmax, as both conventions do.
    probs = softmax(scores)
    columns = {"cls_ap": result.per_class_11pt, "cls_ap_all_points": result.per_class_all_points}
    return ClassificationEval(metrics, result.per_class_11pt, columns, probs, labels)


def detection_not_applicable(space: LabelSpace, test_pairs: int, detections_meta: dict | None = None) -> str | None:
    """Why HOI detection cannot be evaluated on this dataset or run, or None when it can."""
    if detections_meta and detections_meta.get("not_applicable"):
        return str(detections_meta["not_applicable"])
    if not space.has_objects:
        return ("no class has an object category (classes.parquet coco80 is empty), so no human-object box "
                "pair can score a class")
    if test_pairs == 0:
        return "the dataset has no ground-truth human-object pairs (boxes) in its test split"
    return None


def test_pairs(images: pa.Table, pairs: pa.Table) -> pa.Table:
    """The ground-truth pairs of the test images."""
    return pairs.filter(pc.is_in(pairs.column("image_id"), value_set=test_split(images).column("image_id")))


def evaluate_detection(images: pa.Table, pairs: pa.Table, space: LabelSpace, hoi_detections: pa.Table):
    """HOI detection mAP (HICO-DET protocol) Full / Rare / Non-rare, default and known object.

    Returns:
        (metrics, default result, known-object result or None). Rare / non-rare are None where the
        dataset defines no rare split; known object None unless every class has an object.
    """
    test = test_split(images)
    ids = test.column("image_id")
    gt = test_pairs(images, pairs)
    rare = space.rare
    rare_mask = np.zeros(space.size, bool) if rare is None else rare
    default = hicodet_map(hoi_detections, gt, rare_mask, space.size, image_ids=ids.to_numpy())
    hoi_object = space.object_index
    known = None
    if hoi_object is not None:
        # Known object as the official eval_one.m: images with a positive image label of any class of the object.
        rows, hois = np.nonzero(label_matrix(test, space.size) == 1)
        known = hicodet_map(hoi_detections, gt, rare_mask, space.size, known_object=True, image_ids=ids.to_numpy(),
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

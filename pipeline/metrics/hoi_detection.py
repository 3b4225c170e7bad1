"""HICO-DET mAP with the official ho-rcnn rule (``VOCevaldet_bboxpair.m``), vectorized in NumPy.

Per HOI class, detections are ranked by score (ties in image order, then input order, like the
official code's stable sort of detections concatenated image by image). Each
takes the ground-truth pair of the same image and class with the largest min(IoU_human, IoU_object)
(the first such pair on ties); it is a true positive when that overlap is >= 0.5 and the pair was not
taken by a higher-ranked detection, else a false positive. Recall counts every ground-truth pair of the
class; AP is 11-point. Detections on images without ground truth are false positives.

Boxes follow ``pipeline.schemas``: continuous [x1, y1, x2, y2] pixels, the 1-based inclusive HICO-DET
box [x1, y1, x2, y2] stored as [x1 - 1, y1 - 1, x2, y2]. Widths are x2 - x1, which equals the official
x2 - x1 + 1 on the original box, so IoUs are identical to the official code's.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.metrics.ap import ap_from_curve
from pipeline.metrics.pair_tables import pair_columns

log = logging.getLogger(__name__)
DENSE_TABLE_LIMIT = 50_000_000   # (class, image) cells; HICO-DET test: 600 x 9,658 = 5.8M


@dataclass(frozen=True)
class DetectionResult:
    """HICO-DET mAPs as fractions in [0, 1] (multiply by 100 for reports).

    Attributes:
        full, rare, non_rare: mean AP over the classes with at least one ground-truth pair (all 600 on
            the real test set, so this is the official mean) in each split.
        per_class: [C] AP; NaN for a class without ground-truth pairs (the official code would give 0).
        recall: [C] recall after the last detection of each class.
        num_positives, num_detections: [C] ground-truth pairs and ranked detections per class.
        num_evaluated: {"full": n, "rare": n, "non_rare": n} classes in each mean.
    """

    full: float
    rare: float
    non_rare: float
    per_class: np.ndarray
    recall: np.ndarray
    num_positives: np.ndarray
    num_detections: np.ndarray
    num_evaluated: dict
    known_object: bool
    _hits: np.ndarray = field(repr=False, default=None)
    _class_start: np.ndarray = field(repr=False, default=None)

    def precision_recall(self, hoi: int) -> tuple[np.ndarray, np.ndarray]:
        """(recall, precision) at each rank of class ``hoi``'s detections."""
        hits = self._hits[self._class_start[hoi]:self._class_start[hoi + 1]]
        tp = np.cumsum(hits)
        npos = self.num_positives[hoi]
        recall = tp / npos if npos else np.zeros(len(tp))
        return recall, tp / np.arange(1, len(tp) + 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of [K, 4] continuous boxes (0 where they do not overlap or both are empty)."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def hicodet_map(detections, ground_truth, rare, num_classes: int, known_object: bool = False, image_ids=None,
                hoi_object: np.ndarray | None = None, object_images=None,
                min_overlap: float = 0.5) -> DetectionResult:
    """HICO-DET mAP Full / Rare / Non-rare (fractions) with the official matching rule, for any label space.

    Args:
        detections: table with image_id, hoi, human_box, object_box, score (HOI_DETECTIONS schema).
        ground_truth: table with image_id, hoi, human_box, object_box (PAIRS schema): the test pairs.
        rare: rare HOI ids (or a [C] bool mask): the official 138 classes with < 10 training pairs.
        num_classes: C, the number of classes (rows of the classes table).
        known_object: per class, keep only detections on images that hold the class's object category.
        image_ids: the evaluated images, including those without any pair (default: the images of
            ``ground_truth``); a detection on any other image is an error.
        hoi_object: [C] object of each class; required with known_object.
        object_images: (image_ids, objects): the (image, object category) pairs that count as "the image
            holds the object" for known_object. The official ``eval_one.m`` takes the images with a
            positive HICO image label of any HOI of the object; pass those (the evaluate stage does).
            Default: the pairs of ``ground_truth``, which on the real test set misses 118 of the
            official 9,827 (image, object) cells (HOIs without boxes).
        min_overlap: the min(IoU_h, IoU_o) a true positive needs (official: 0.5, inclusive).

    Raises:
        ValueError: bad rows (see ``pipeline.metrics.pair_tables.pair_columns``) or unknown image ids.
    """
    det = pair_columns(detections, "detections", num_classes, with_score=True)
    gt = pair_columns(ground_truth, "ground_truth", num_classes, with_score=False)
    images = np.unique(gt.image_id if image_ids is None else np.asarray(image_ids, dtype=np.int64))
    gt_img = _image_index(gt.image_id, images, "ground_truth")
    det_img = _image_index(det.image_id, images, "detections")
    if len(det) == 0:
        warnings.warn("hicodet_map: the detection table is empty; every class with ground truth gets AP 0",
                      stacklevel=2)
    rows = np.arange(len(det))
    if known_object:
        if object_images is None:
            object_images = (gt.image_id, None)
        rows = _known_object_rows(det, det_img, gt, object_images, images, hoi_object, num_classes)
    # Rank once: by class, then descending score; ties in image order, then input order, as Matlab's
    # stable sort of the official detections, which it concatenates image by image. Three stable sorts.
    rows = rows[np.argsort(det_img[rows], kind="stable")]
    rows = rows[np.argsort(-det.score[rows], kind="stable")]
    rows = rows[np.argsort(det.hoi[rows].astype(np.int16 if num_classes < 2**15 else np.int64), kind="stable")]
    det_hoi, det_img = det.hoi[rows], det_img[rows]
    gorder = np.lexsort((np.arange(len(gt)), gt_img, gt.hoi))
    gt, gt_img = gt.take(gorder), gt_img[gorder]
    # Boxes stay unsorted: only the (detection, pair) candidates gather them, through ``rows``.
    hits = _match(det, rows, det_hoi, det_img, gt, gt_img, len(images), min_overlap)

    num_positives = np.bincount(gt.hoi, minlength=num_classes)
    class_start = np.searchsorted(det_hoi, np.arange(num_classes + 1))
    per_class = np.full(num_classes, np.nan)
    recall = np.zeros(num_classes)
    for c in np.flatnonzero(num_positives):
        tp = np.cumsum(hits[class_start[c]:class_start[c + 1]])
        rec = tp / num_positives[c]
        per_class[c] = ap_from_curve(rec, tp / np.arange(1, len(tp) + 1)) if len(tp) else 0.0
        recall[c] = rec[-1] if len(tp) else 0.0
    rare_mask = _rare_mask(rare, num_classes)
    means, counts = {}, {}
    for split, mask in (("full", np.ones(num_classes, bool)), ("rare", rare_mask), ("non_rare", ~rare_mask)):
        values = per_class[mask & (num_positives > 0)]
        means[split] = float(values.mean()) if values.size else float("nan")
        counts[split] = int(values.size)
    return DetectionResult(means["full"], means["rare"], means["non_rare"], per_class, recall,
                           num_positives, np.diff(class_start), counts, known_object, hits, class_start)


def _match(det, rows, det_hoi, det_img, gt, gt_img, num_images: int, min_overlap: float) -> np.ndarray:
    """[D] true-positive flags of ranked detections against class/image-sorted ground truth."""
    dkey = det_hoi * num_images + det_img
    gkey = gt.hoi * num_images + gt_img
    cells = int(max(dkey.max(initial=0), gkey.max(initial=0))) + 1
    if cells <= DENSE_TABLE_LIMIT:
        # A dense (class, image) -> first pair / pair count table: a gather instead of 2 binary searches.
        table_count = np.bincount(gkey, minlength=cells)
        table_start = np.cumsum(table_count) - table_count
        start, count = table_start[dkey], table_count[dkey]
    else:
        start = np.searchsorted(gkey, dkey, side="left")
        count = np.searchsorted(gkey, dkey, side="right") - start
    # Every (detection, ground-truth pair of its image and class) candidate, flattened.
    cand_det = np.repeat(np.arange(len(rows)), count)
    first_cand = np.cumsum(count) - count
    cand_gt = start[cand_det] + np.arange(len(cand_det)) - first_cand[cand_det]
    src = rows[cand_det]
    overlap = np.minimum(box_iou(det.human_box[src], gt.human_box[cand_gt]),
                         box_iou(det.object_box[src], gt.object_box[cand_gt]))
    best_gt = np.full(len(rows), -1)
    best_overlap = np.full(len(rows), -np.inf)
    has = count > 0
    if has.any():
        seg_max = np.maximum.reduceat(overlap, first_cand[has])
        best_overlap[has] = seg_max
        at_max = overlap == np.repeat(seg_max, count[has])
        # the first pair reaching the maximum, like the official strict ">" update
        dets, first = np.unique(cand_det[at_max], return_index=True)
        best_gt[dets] = cand_gt[at_max][first]
    claims = np.flatnonzero(best_overlap >= min_overlap)
    hits = np.zeros(len(rows), dtype=bool)
    # A pair is taken by the highest-ranked detection that claims it; later claims are duplicates.
    _, first_claim = np.unique(best_gt[claims], return_index=True)
    hits[claims[first_claim]] = True
    return hits


def _known_object_rows(det, det_img, gt, object_images, images, hoi_object, num_classes) -> np.ndarray:
    """Detection rows whose image holds the detection's object category (``object_images`` pairs;
    objects None = those of the ground-truth pairs)."""
    if hoi_object is None:
        raise ValueError("known_object needs hoi_object, the object index of each class")
    hoi_object = np.asarray(hoi_object, dtype=np.int64)
    if hoi_object.shape != (num_classes,):
        raise ValueError(f"hoi_object has shape {hoi_object.shape}, expected ({num_classes},)")
    num_objects = int(hoi_object.max()) + 1
    ids, objects = object_images
    objects = hoi_object[gt.hoi] if objects is None else np.asarray(objects, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != objects.shape:
        raise ValueError(f"object_images: {ids.shape[0]} image ids but {objects.shape[0]} objects")
    known = np.isin(ids, images)   # images outside the evaluation hold no detection anyway
    with_object = np.unique(np.searchsorted(images, ids[known]) * num_objects + objects[known])
    keep = np.isin(det_img * num_objects + hoi_object[det.hoi], with_object)
    log.debug("known-object setting keeps %d of %d detections", keep.sum(), len(keep))
    return np.flatnonzero(keep)


def _rare_mask(rare, num_classes: int) -> np.ndarray:
    values = np.asarray(sorted(rare) if isinstance(rare, (set, frozenset)) else rare)
    if values.dtype == bool:
        if values.shape != (num_classes,):
            raise ValueError(f"rare mask has shape {values.shape}, expected ({num_classes},)")
        return values.copy()
    values = values.astype(np.int64).reshape(-1)
    if ((values < 0) | (values >= num_classes)).any():
        raise ValueError(f"rare holds HOI ids outside [0, {num_classes})")
    mask = np.zeros(num_classes, dtype=bool)
    mask[values] = True
    return mask


def _image_index(ids: np.ndarray, images: np.ndarray, name: str) -> np.ndarray:
    """Position of each image id in the sorted ``images``; raises naming the first unknown row."""
    pos = np.searchsorted(images, ids)
    clipped = np.minimum(pos, max(len(images) - 1, 0))
    unknown = (images[clipped] != ids) if len(images) else np.ones(len(ids), dtype=bool)
    if unknown.any():
        r = int(np.argmax(unknown))
        raise ValueError(f"{name} row {r}: image_id {ids[r]} is not a ground-truth test image "
                         f"({len(images)} known; pass image_ids to include images without pairs)")
    return pos

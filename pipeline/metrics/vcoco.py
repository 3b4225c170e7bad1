"""V-COCO's agent AP and role AP (scenarios 1 and 2), equal to the official ``vsrl_eval.py`` (s-gupta/v-coco).

The rules, each of which moves a mean when broken (docs/evaluation.md):

* ground truth (:func:`vcoco_ground_truth`): per image (the V-COCO file's images, ascending ids), every
  COCO annotation not marked ``ignore`` whose box ``x2 = x1 + max(0, w - 1)``, ``y2`` likewise, clipped to
  the image, is non-empty and whose area is positive; the people are those of the instances file's first
  category (person), in file order; a person whose annotation is not in the V-COCO file is *unannotated*;
* a detected person is matched to the person of highest IoU among ALL the image's people (the first in
  file order on ties, at IoU 0 too) and skipped (neither true nor false positive) when that person is
  unannotated; IoU counts pixels inclusively (+1) and is computed in float32, as the official code does;
* per action (agent AP) or (action, role) (role AP), the image's detections with a score (NaN = not
  predicted) are taken in descending score order (``argsort()[::-1]``, ties as NumPy orders them); a
  detection is a true positive when the matched person does the action, the person IoU is >= 0.5, for role
  AP the role box's IoU with that person's own role object is >= 0.5, and the person was not taken by a
  higher-ranked detection (duplicates are false positives); the role ranking uses the role entry's own
  score (its fifth number);
* a person doing the action without an annotated role object: scenario 1 counts the role as correct only
  for an all-zero or all-NaN predicted box, scenario 2 always;
* positives: the people doing the action (shared by its roles, with or without a role object);
* AP: VOC all-points (area under the precision envelope), float32 as the official arrays; the printed
  means: role AP = ``nanmean`` over the 25 (action, role) entries, ``point`` included; agent AP = the sum
  over the 26 actions / 26. Papers often leave ``point`` out: :meth:`VcocoEval.role_map` takes ``without``.

Where the official code stops with an error this one goes on and says so: a slot with no ranked detection
gets AP 0, a class without positives NaN (left out of the means), detections on an image without any
person are skipped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.datasets.files import AnnotationError
from pipeline.datasets.vcoco import CocoInstances, VcocoAction

SCENARIOS = ("scenario_1", "scenario_2")
OVERLAP = 0.5
_ONE, _ZERO = np.float32(1.0), np.float32(0.0)


@dataclass
class VcocoGroundTruth:
    """The people of the evaluated images, as the official ``_get_vcocodb`` builds them.

    Attributes:
        actions: action names in file order; ``roles``: their role names (``agent`` first).
        image_ids: [I] the evaluated COCO image ids, ascending (the official order).
        person_start: [I + 1] offsets of each image's people in the person arrays.
        person_box: [P, 4] float32 clean boxes (inclusive pixels); ``person_ann``: [P] COCO annotation ids.
        person_actions: [P, A] int8: 1 does the action, 0 does not, -1 unannotated person.
        role_box: [P, A, 2, 4] float32 box of the person's role object per action and role, -1 where none.
    """

    actions: list[str]
    roles: list[list[str]]
    image_ids: np.ndarray
    person_start: np.ndarray
    person_box: np.ndarray
    person_ann: np.ndarray
    person_actions: np.ndarray
    role_box: np.ndarray
    sources: dict = field(default_factory=dict)

    @property
    def positives(self) -> np.ndarray:
        """[A] people doing each action (the recall denominator of the action and of each of its roles)."""
        return (self.person_actions == 1).sum(axis=0)

    @property
    def unannotated(self) -> np.ndarray:
        """[P] people the V-COCO file does not annotate (a detection matched to one is skipped)."""
        return (self.person_actions == -1).any(axis=1)


def clean_boxes(bbox: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """COCO [x, y, w, h] -> the official inclusive [x1, y1, x1 + max(0, w - 1), ...] clipped to the image
    (float64, as the official code computes them before storing float32)."""
    x1, y1 = bbox[:, 0], bbox[:, 1]
    x2 = x1 + np.maximum(0.0, bbox[:, 2] - 1.0)
    y2 = y1 + np.maximum(0.0, bbox[:, 3] - 1.0)
    w1, h1 = width - 1.0, height - 1.0
    return np.stack([np.minimum(w1, np.maximum(0.0, x1)), np.minimum(h1, np.maximum(0.0, y1)),
                     np.minimum(w1, np.maximum(0.0, x2)), np.minimum(h1, np.maximum(0.0, y2))], axis=1)


def vcoco_ground_truth(actions: list[VcocoAction], coco: CocoInstances, source: str = "") -> VcocoGroundTruth:
    """The evaluated people of a V-COCO file (see the module docstring).

    Raises:
        AnnotationError: an image missing from the instances file, an annotation without a usable
            ``bbox`` / ``area`` / ``category_id``, a person labelled twice for one action, a role object
            that is not a valid annotation of the person's image (where the official code stops).
    """
    where = source or "V-COCO file"
    image_ids = np.unique(actions[0].image_id)
    person_cat = coco.categories[0].get("id")
    known_cats = {c.get("id") for c in coco.categories}
    by_image: dict = {}
    for k, ann in enumerate(coco.annotations):
        by_image.setdefault(ann["image_id"], []).append(k)
    order, sizes = [], []
    for i in image_ids.tolist():
        im = coco.images.get(i)
        if im is None:
            raise AnnotationError(f"{where}: image {i} is not in {coco.source}")
        idx = by_image.get(i, [])
        order += idx
        sizes += [(im.get("width"), im.get("height"))] * len(idx)
    anns = [coco.annotations[k] for k in order]
    try:
        bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        area = np.array([a["area"] for a in anns], dtype=np.float64)
        wh = np.array(sizes, dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"{coco.source}: an annotation of a V-COCO image lacks a usable bbox / area, or its "
                              f"image a width / height ({e})") from None
    cats = [a.get("category_id") for a in anns]
    unknown = sorted({c for c in cats if c not in known_cats}, key=str)
    if unknown:
        raise AnnotationError(f"{coco.source}: category_id {unknown[:5]} not among its categories")
    boxes = clean_boxes(bbox, wh[:, 0], wh[:, 1])
    with np.errstate(invalid="ignore"):
        valid = (area > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    valid &= np.array([a.get("ignore") != 1 for a in anns], dtype=bool)
    ann_id = np.array([a["id"] for a in anns], dtype=np.int64)
    image_of = np.array([a["image_id"] for a in anns], dtype=np.int64)
    person = valid & (np.array(cats, dtype=object) == person_cat)
    p_idx = np.flatnonzero(person)
    img_pos = np.searchsorted(image_ids, image_of[p_idx])
    counts = np.bincount(img_pos, minlength=len(image_ids))
    start = np.concatenate([[0], np.cumsum(counts)])
    n_act = len(actions)
    in_vcoco = np.isin(ann_id[p_idx], actions[0].ann_id)
    person_actions = np.where(in_vcoco[:, None], 0, -1).astype(np.int8).repeat(n_act, axis=1)
    role_box = np.full((len(p_idx), n_act, 2, 4), -1.0, dtype=np.float32)
    # the valid annotations of each image by id: where a role object is looked up
    valid_of_image: dict = {}
    for k in np.flatnonzero(valid).tolist():
        valid_of_image.setdefault(int(image_of[k]), {})[int(ann_id[k])] = k
    row_of = {int(a): r for r, a in enumerate(ann_id[p_idx].tolist())}
    for a, act in enumerate(actions):
        labelled = np.flatnonzero(act.label == 1)
        ids, counts_l = np.unique(act.ann_id[labelled], return_counts=True)
        if (counts_l > 1).any():
            raise AnnotationError(f"{where} action {act.name!r}: person {int(ids[counts_l > 1][0])} is labelled 1 "
                                  "twice")
        for r in labelled.tolist():
            person_id = int(act.ann_id[r])
            row = row_of.get(person_id)
            if row is None or not in_vcoco[row]:
                continue
            person_actions[row, a] = 1
            rids = act.role_object_id[r]
            if rids[0] != person_id:
                raise AnnotationError(f"{where} action {act.name!r}: role_object_id of person {person_id} starts "
                                      f"with {int(rids[0])}, not the person")
            for j in range(1, len(rids)):
                if rids[j] == 0:
                    continue
                k = valid_of_image.get(int(image_of[p_idx[row]]), {}).get(int(rids[j]))
                if k is None:
                    raise AnnotationError(f"{where} action {act.name!r}: role object {int(rids[j])} of person "
                                          f"{person_id} is not a valid annotation of image "
                                          f"{int(image_of[p_idx[row]])} in {coco.source}")
                role_box[row, a, j - 1] = boxes[k].astype(np.float32)
    return VcocoGroundTruth([act.name for act in actions], [list(act.roles) for act in actions], image_ids, start,
                            boxes[p_idx].astype(np.float32), ann_id[p_idx], person_actions, role_box,
                            {"vcoco": source, "coco": coco.source})


def overlaps(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Row-wise IoU of float32 ``boxes`` (ground truth) and ``ref`` (predicted) with the official +1 pixel
    convention, term for term in the official ``get_overlap``'s float32 arithmetic."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iw = np.maximum(np.minimum(boxes[:, 2], ref[:, 2]) - np.maximum(boxes[:, 0], ref[:, 0]) + _ONE, _ZERO)
        ih = np.maximum(np.minimum(boxes[:, 3], ref[:, 3]) - np.maximum(boxes[:, 1], ref[:, 1]) + _ONE, _ZERO)
        inters = iw * ih
        uni = ((ref[:, 2] - ref[:, 0] + _ONE) * (ref[:, 3] - ref[:, 1] + _ONE)
               + (boxes[:, 2] - boxes[:, 0] + _ONE) * (boxes[:, 3] - boxes[:, 1] + _ONE) - inters)
        return inters / uni


def match_people(gt: VcocoGroundTruth, entry_image: np.ndarray, entry_box: np.ndarray):
    """Each detected person's best ground-truth person: (index into the person arrays, -1 on an image
    without people; its IoU, NaN where an IoU was NaN as the official ``max``)."""
    entry_image = np.asarray(entry_image, dtype=np.int64)
    start = gt.person_start[entry_image]
    count = gt.person_start[entry_image + 1] - start
    best = np.full(len(entry_image), -1, dtype=np.int64)
    ovmax = np.full(len(entry_image), np.nan, dtype=np.float32)
    has = np.flatnonzero(count > 0)
    if not len(has):
        return best, ovmax
    n = count[has]
    first = np.cumsum(n) - n
    seg = np.repeat(np.arange(len(has)), n)
    person = np.repeat(start[has], n) + np.arange(n.sum()) - np.repeat(first, n)
    ov = overlaps(gt.person_box[person], np.asarray(entry_box, np.float32)[has][seg])
    nan = np.isnan(ov)
    top = np.maximum.reduceat(ov, first)              # NaN wherever a NaN is (np.max's rule)
    any_nan = np.logical_or.reduceat(nan, first)
    hit = np.where(any_nan[seg], nan, ov == top[seg])  # argmax: the first maximum, or the first NaN
    at = np.flatnonzero(hit)
    _, first_hit = np.unique(seg[at], return_index=True)
    best[has] = person[at[first_hit]]
    ovmax[has] = top
    return best, ovmax


def processing_order(image: np.ndarray, entry: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The order in which the official loop meets the detections: images ascending, and within an image
    ``argsort()[::-1]`` of the scores in file (entry) order. Ties within an image are ordered by that very
    ``argsort``, so equal scores fall as they fall in the official code."""
    base = np.lexsort((entry, image))
    img, s = image[base], score[base]
    order = np.lexsort((-s, img))
    tie = (img[order][1:] == img[order][:-1]) & (s[order][1:] == s[order][:-1])
    if tie.any():
        tied = np.unique(img[order][1:][tie])
        for lo, hi in zip(np.searchsorted(img, tied, "left").tolist(), np.searchsorted(img, tied, "right").tolist()):
            order[lo:hi] = lo + s[lo:hi].argsort()[::-1]
    return base[order]


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC all-points AP, as the official ``voc_ap``."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def ranked_ap(score: np.ndarray, tp: np.ndarray, positives: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(AP, recall, precision) of detections in processing order, ranked as the official code ranks them
    (float32 scores ``argsort()[::-1]``, float32 cumulative counts). NaN without positives, 0 without
    detections (where the official code stops)."""
    if positives == 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    if not len(score):
        return 0.0, np.zeros(0), np.zeros(0)
    idx = np.asarray(score, np.float32).argsort()[::-1]
    tp32 = np.cumsum(np.asarray(tp, np.float32)[idx])
    fp32 = np.cumsum(np.asarray(~np.asarray(tp, bool), np.float32)[idx])
    rec = tp32 / float(positives)
    prec = tp32 / np.maximum(tp32 + fp32, np.finfo(np.float64).eps)
    return voc_ap(rec, prec), rec, prec


@dataclass
class VcocoEval:
    """Per-action and per-(action, role) APs as the official float32 arrays, and their means.

    Attributes:
        agent_ap: [A] float32; ``role_ap``: scenario -> [A, 2] float32, NaN where an action has no such
            role (the official layout).
        positives: [A] people doing each action; ``ranked_agent`` [A], ``ranked_role`` [A, 2]: detections
            ranked (matched to an annotated person).
        curves: (action, role slot 0 = agent / 1..2, scenario or "agent") -> (recall, precision).
        skipped_no_person: scored detections on images without any person (the official code stops there).
    """

    actions: list[str]
    roles: list[list[str]]
    agent_ap: np.ndarray
    role_ap: dict
    positives: np.ndarray
    ranked_agent: np.ndarray
    ranked_role: np.ndarray
    curves: dict = field(default_factory=dict, repr=False)
    skipped_no_person: int = 0

    def role_map(self, scenario: str, without: tuple[str, ...] = ()) -> float:
        """The official mean role AP (a fraction): ``np.nanmean`` of the float32 [A, 2] array, bit for bit;
        ``without``: actions left out (papers: ``("point",)``)."""
        ap = self.role_ap[scenario].copy()
        for name in without:
            ap[self.actions.index(name)] = np.nan
        return float(np.nanmean(ap)) if (~np.isnan(ap)).any() else float("nan")

    def role_map_percent(self, scenario: str, without: tuple[str, ...] = ()) -> float:
        """The official printed value ``np.nanmean(role_ap) * 100.00`` (float32 product)."""
        return float(np.float32(self.role_map(scenario, without)) * np.float32(100.0))

    def agent_map_percent(self) -> float:
        """The official printed agent mean ``np.nansum(agent_ap) * 100.00 / num_actions`` (float32)."""
        return float(np.nansum(self.agent_ap) * np.float32(100.0) / len(self.actions))


def vcoco_eval(gt: VcocoGroundTruth, entry_image, entry_box, row_entry, row_action, row_slot, row_score,
               row_box) -> VcocoEval:
    """Agent AP and role AP (both scenarios) of detected people (see the module docstring).

    Args:
        entry_image: [E] index into ``gt.image_ids`` of each detected person (an entry of the results list),
            entries in file order; ``entry_box``: [E, 4] its box.
        row_entry, row_action, row_slot: [R] one row per (entry, action, key): the entry, the action
            index, 0 for ``<action>_agent`` or the role's index in ``gt.roles[action]``.
        row_score: [R] the score (NaN = not predicted); ``row_box``: [R, 4] the role box (unused for agents).
    """
    entry_image = np.asarray(entry_image, np.int64)
    best, ovmax = match_people(gt, entry_image, np.asarray(entry_box, np.float32))
    row_entry, row_action, row_slot = (np.asarray(x, np.int64) for x in (row_entry, row_action, row_slot))
    row_score = np.asarray(row_score, np.float32)
    row_box = np.asarray(row_box, np.float32).reshape(-1, 4)
    A = len(gt.actions)
    positives = gt.positives
    unannotated = gt.unannotated
    agent_ap = np.full(A, np.nan, np.float32)
    role_ap = {s: np.full((A, 2), np.nan, np.float32) for s in SCENARIOS}
    ranked_agent, ranked_role = np.zeros(A, np.int64), np.zeros((A, 2), np.int64)
    curves, skipped = {}, 0
    scored = ~np.isnan(row_score)
    by_slot = np.lexsort((row_slot, row_action))
    key = row_action[by_slot] * 3 + row_slot[by_slot]
    bounds = np.flatnonzero(np.diff(key)) + 1
    groups = {int(key[lo]): by_slot[lo:hi] for lo, hi in zip([0, *bounds], [*bounds, len(key)]) if hi > lo}
    for a in range(A):
        slots = range(len(gt.roles[a])) if len(gt.roles[a]) > 1 else [0]
        for slot in sorted({0, *slots}):
            rows = groups.get(a * 3 + slot, np.zeros(0, np.int64))
            rows = rows[scored[rows]]
            placed = best[row_entry[rows]] >= 0
            skipped += int((~placed).sum())
            rows = rows[placed]
            rows = rows[processing_order(entry_image[row_entry[rows]], row_entry[rows], row_score[rows])]
            person = best[row_entry[rows]]
            keep = ~unannotated[person]
            rows, person = rows[keep], person[keep]
            hit = (gt.person_actions[person, a] == 1) & (ovmax[row_entry[rows]] >= OVERLAP)
            if slot == 0:
                ap, rec, prec = ranked_ap(row_score[rows], _first_per_person(hit, person), int(positives[a]))
                agent_ap[a], ranked_agent[a], curves[(a, 0, "agent")] = ap, len(rows), (rec, prec)
                continue
            target = gt.role_box[person, a, slot - 1]
            pred = row_box[rows]
            none = np.all(target == -1, axis=1)
            iou = overlaps(target, pred)
            empty = np.all(pred == 0, axis=1) | np.all(np.isnan(pred), axis=1)
            for scenario, if_none in (("scenario_1", empty), ("scenario_2", np.ones(len(rows), bool))):
                with np.errstate(invalid="ignore"):
                    role_ok = np.where(none, if_none, iou >= OVERLAP)
                tp = _first_per_person(hit & role_ok, person)
                ap, rec, prec = ranked_ap(row_score[rows], tp, int(positives[a]))
                role_ap[scenario][a, slot - 1] = ap
                curves[(a, slot, scenario)] = (rec, prec)
            ranked_role[a, slot - 1] = len(rows)
    return VcocoEval(list(gt.actions), [list(r) for r in gt.roles], agent_ap, role_ap, positives, ranked_agent,
                     ranked_role, curves, skipped)


def _first_per_person(candidate: np.ndarray, person: np.ndarray) -> np.ndarray:
    """True positives: the first candidate (in processing order) of each person; later ones are duplicates."""
    tp = np.zeros(len(candidate), bool)
    at = np.flatnonzero(candidate)
    _, first = np.unique(person[at], return_index=True)
    tp[at[first]] = True
    return tp

"""A per-detection loop written like the official Matlab ``VOCevaldet_bboxpair.m``: the test oracle
and benchmark baseline for :func:`pipeline.metrics.hoi_detection.hicodet_map`.

It takes boxes in the official 1-based inclusive convention (widths x2 - x1 + 1), so comparing it with
``hicodet_map`` on boxes converted to the pipeline's convention also checks that conversion.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipeline.metrics.ap import RECALL_THRESHOLDS


def official_loop_ap(det_image, det_boxes, det_score, gt_by_image, min_overlap: float = 0.5) -> float:
    """AP of one class. det_boxes rows are 8 numbers (human x1 y1 x2 y2, object x1 y1 x2 y2);
    ``gt_by_image`` maps image id -> list of such rows."""
    taken = {i: [False] * len(b) for i, b in gt_by_image.items()}
    npos = sum(len(b) for b in gt_by_image.values())
    order = sorted(range(len(det_score)), key=lambda d: -det_score[d])  # stable, like Matlab sort
    tp, fp = [], []
    for d in order:
        i = det_image[d]
        bb = det_boxes[d]
        ov_max, j_max = -np.inf, -1
        for j, g in enumerate(gt_by_image.get(i, ())):
            ov = min(_iou_plus_one(bb[0:4], g[0:4]), _iou_plus_one(bb[4:8], g[4:8]))
            if ov > ov_max:
                ov_max, j_max = ov, j
        if ov_max >= min_overlap and not taken[i][j_max]:
            taken[i][j_max] = True
            tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos if npos else np.zeros(len(tp))
    prec = tp / np.maximum(tp + fp, 1)
    ap = 0.0
    for t in RECALL_THRESHOLDS:
        p = prec[rec >= t]
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def official_loop_map(det_image, det_hoi, det_boxes, det_score, gt_image, gt_hoi, gt_boxes,
                      classes) -> np.ndarray:
    """Per-class AP for ``classes`` (only those: the loop is slow by design)."""
    wanted = set(int(c) for c in classes)
    gts: dict[int, dict] = {c: defaultdict(list) for c in wanted}
    for i, h, b in zip(gt_image.tolist(), gt_hoi.tolist(), gt_boxes.tolist()):
        if h in wanted:
            gts[h][i].append(b)
    dets: dict[int, list] = {c: [] for c in wanted}
    # the official code concatenates each class's detections image by image before its stable sort
    for d in sorted(range(len(det_image)), key=lambda d: det_image[d]):
        h = int(det_hoi[d])
        if h in wanted:
            dets[h].append(d)
    out = []
    for c in classes:
        idx = dets[int(c)]
        out.append(official_loop_ap([det_image[d] for d in idx], [det_boxes[d] for d in idx],
                                    [det_score[d] for d in idx], gts[int(c)]))
    return np.array(out)


def _iou_plus_one(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw > 0 and ih > 0:
        ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
        return iw * ih / ua
    return 0.0

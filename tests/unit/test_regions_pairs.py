"""Detections -> human-object pairs: thresholds, NMS, caps, bad boxes, bad scores."""
import numpy as np
import pytest

from pipeline.detection.boxes import LIKELY_XYWH
from pipeline.regions.pairs import PairParams, make_pairs

W, H = 200.0, 100.0


def pairs_of(dets, params=PairParams(), w=W, h=H):
    boxes = np.array([d[0] for d in dets], float).reshape(-1, 4)
    labels = np.array([d[1] for d in dets], int)
    scores = np.array([d[2] for d in dets], float)
    return make_pairs(boxes, labels, scores, w, h, params, image_id=7)


def as_set(p):
    return {(tuple(h), tuple(o)) for h, o in zip(p.human_box.tolist(), p.object_box.tolist())}


def test_every_human_with_every_other_box_and_persons_as_objects():
    h1, h2, cup = [0, 0, 50, 90], [100, 0, 150, 90], [60, 40, 80, 60]
    p = pairs_of([(h1, 0, 0.9), (h2, 0, 0.8), (cup, 41, 0.7)])
    assert len(p) == 4  # 2 humans x 3 instances, minus the 2 self-pairs
    assert as_set(p) == {(tuple(map(float, a)), tuple(map(float, b)))
                         for a, b in [(h1, h2), (h1, cup), (h2, h1), (h2, cup)]}
    cup_pair = np.flatnonzero(p.object_label == 41)
    assert np.allclose(p.object_score[cup_pair], 0.7) and np.allclose(p.human_score[cup_pair], [0.9, 0.8])


def test_score_threshold_nms_classwise_and_caps():
    dets = [([0, 0, 50, 90], 0, 0.9), ([1, 1, 51, 91], 0, 0.85),   # duplicate person: NMS drops it
            ([1, 1, 51, 91], 56, 0.6),                               # same box, other class: kept
            ([100, 0, 150, 90], 0, 0.1)]                             # below threshold
    p = pairs_of(dets)
    assert len(p) == 1 and p.object_label.tolist() == [56]
    many = [([i * 10, 0, i * 10 + 8, 50], 0, 0.5 + i / 100) for i in range(10)]
    many += [([i * 10, 60, i * 10 + 8, 99], 3, 0.5) for i in range(10)]
    p = pairs_of(many, PairParams(max_humans=3, max_objects=2))
    assert len(p) == 3 * (3 + 2 - 1)
    assert np.allclose(np.unique(p.human_score), [0.57, 0.58, 0.59])   # the highest-scoring humans


def test_no_detections_and_no_humans_give_no_pairs():
    assert len(pairs_of([])) == 0
    assert len(pairs_of([([0, 0, 10, 10], 5, 0.9)])) == 0


def test_bad_boxes_are_clipped_or_rejected_with_counts():
    dets = [([-10, -5, 50, 120], 0, 0.9),     # partly outside: clipped
            ([150, 20, 100, 30], 3, 0.9),     # x2 < x1: rejected
            ([20, 20, 10, 30], 3, 0.9),       # x2 < x1, but 20 + 10 <= 200 and 20 + 30 <= 100: x, y, w, h?
            ([300, 0, 400, 50], 3, 0.9),      # outside the image: rejected
            ([np.nan, 0, 10, 10], 3, 0.9),    # non-finite: rejected
            ([60, 10, 90, 40], 3, 0.9)]
    p = pairs_of(dets)
    assert len(p) == 1
    assert p.human_box.tolist() == [[0.0, 0.0, 50.0, 100.0]]
    assert p.rejected == {"degenerate box (x2 <= x1 or y2 <= y1)": 1, LIKELY_XYWH: 1, "box outside the image": 1,
                          "non-finite box": 1, "clipped to the image (kept)": 1}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1, 1.5])
def test_bad_scores_raise_naming_the_image(bad):
    with pytest.raises(ValueError, match="image 7.*score"):
        pairs_of([([0, 0, 10, 10], 0, 0.9), ([0, 0, 10, 10], 3, bad)])

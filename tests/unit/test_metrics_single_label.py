"""Single-label mAP in both MPII conventions against hand computations and a loop written like the
published code (Girdhar et al.'s ``calc_pr_ovr_noref`` + ``voc_ap``)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import average_precision_11pt, single_label_map
from pipeline.metrics.single_label import all_points_ap, softmax


def voc_ap_loop(scores: np.ndarray, positive: np.ndarray) -> float:
    """All-points AP as the published Python loop: sort descending, cumulate, make the precision envelope
    monotone from the right, sum precision over recall steps."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = np.cumsum([positive[i] for i in order])
    fp = np.cumsum([not positive[i] for i in order])
    rec, prec = list(tp / positive.sum()), list(tp / (tp + fp))
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def test_two_conventions_on_a_hand_example():
    # 4 images, 3 classes; class 2 has no positive.
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.5, 0.0], [0.2, 0.1, 5.0]])
    labels = np.array([0, 1, 1, 0])
    r = single_label_map(logits, labels)
    probs = softmax(logits)
    for c in (0, 1):
        pos = labels == c
        assert r.per_class_11pt[c] == pytest.approx(average_precision_11pt(probs[:, c], pos))
        assert r.per_class_all_points[c] == pytest.approx(voc_ap_loop(probs[:, c], pos))
    assert np.isnan(r.per_class_11pt[2]) and r.num_classes == 3 and r.num_with_positive == 2
    assert r.map_all_classes == pytest.approx((r.per_class_11pt[0] + r.per_class_11pt[1] + 0) / 3)
    assert r.map_with_positive == pytest.approx((r.per_class_all_points[0] + r.per_class_all_points[1]) / 2)
    assert r.accuracy == pytest.approx(2 / 4)                        # images 0 and 1 argmax right


def test_ranking_is_by_the_softmax_not_the_logits():
    """Image A has the higher logit for class 0 but a much higher competitor: the softmax ranks B first."""
    logits = np.array([[5.0, 9.0], [4.0, 0.0]])
    labels = np.array([1, 0])                                         # B (row 1) is class 0
    r = single_label_map(logits, labels)
    assert r.per_class_11pt[0] == pytest.approx(1.0)                  # softmax: B ranks first for class 0
    assert average_precision_11pt(logits[:, 0], labels == 0) < 1.0    # by logits it would not


def test_random_scores_match_the_reference_loop():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(200, 12)), rng.integers(0, 10, 200)   # classes 10, 11 without positives
    r = single_label_map(logits, labels)
    probs = softmax(logits)
    ref = [voc_ap_loop(probs[:, c], labels == c) for c in range(10)]
    np.testing.assert_allclose(r.per_class_all_points[:10], ref, atol=1e-12)
    assert r.map_with_positive == pytest.approx(np.mean(ref))
    assert r.map_all_classes == pytest.approx(np.nansum(r.per_class_11pt) / 12)
    assert all_points_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_bad_input_names_row_and_value():
    with pytest.raises(ValueError, match="label of image row 1 is 3"):
        single_label_map(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="score of image row 0, class 1 is nan"):
        single_label_map(np.array([[0.0, np.nan]]), [0])
    with pytest.raises(ValueError, match="with C = 4"):
        single_label_map(np.zeros((2, 3)), [0, 1], num_classes=4)

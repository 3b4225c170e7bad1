"""HICO classification mAP: the 11-point AP by hand, and the official rule on the real anno.mat."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets.labels import object_present
from pipeline.metrics import average_precision_11pt, hico_classification_map, subset_map
from pipeline.classes.hico_vocab import hico_vocabulary

HOI_OBJECT = hico_vocabulary().hoi_object


def test_ap_11pt_by_hand():
    # ranks: TP, FP, TP -> recall .5 .5 1, precision 1 .5 .667: t<=.5 -> 1 (6 points), t>.5 -> 2/3 (5)
    assert average_precision_11pt([3, 2, 1], [1, 0, 1]) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # a missed positive (num_positives=3): recall never passes 2/3 -> thresholds .7..1 give 0
    assert average_precision_11pt([3, 2, 1], [1, 0, 1], num_positives=3) == pytest.approx(
        (4 * 1 + 3 * 2 / 3) / 11)
    assert average_precision_11pt([], []) == 0.0
    # Matlab's 0:0.1:1 thresholds: a recall of exactly 3/10 misses t = 0.30000000000000004 ...
    assert average_precision_11pt([1, 1, 1], [1, 1, 1], num_positives=10) == pytest.approx(3 / 11)
    # ... while 7/10 reaches t = 0.7 (NumPy's arange would give 0.7000000000000001 and miss it)
    assert average_precision_11pt(np.ones(7), np.ones(7), num_positives=10) == pytest.approx(8 / 11)


def test_ap_rejects_non_finite_scores():
    with pytest.raises(ValueError, match="finite"):
        average_precision_11pt([1.0, np.nan], [1, 0])


def test_classification_rule_on_a_small_table():
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    # the ambiguous image outranks the positive: removed, so AP stays 1; NaN is a negative
    labels = np.array([[0.0], [1.0], [np.nan], [1.0]])
    result = hico_classification_map(scores, labels)
    # ranks after removal: TP, FP(NaN), TP -> same as the hand case above
    assert result.per_class[0] == pytest.approx((6 + 5 * 2 / 3) / 11)
    no_pos = hico_classification_map(scores, np.array([[-1.0], [np.nan], [0.0], [-1.0]]))
    assert np.isnan(no_pos.per_class[0]) and no_pos.num_evaluated == 0


def test_classification_bad_input():
    with pytest.raises(ValueError, match="row 1, class 0"):
        hico_classification_map(np.array([[0.0], [np.inf]]), np.array([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match="expected 1, -1, 0 or NaN"):
        hico_classification_map(np.zeros((2, 1)), np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        hico_classification_map(np.zeros((2, 2)), np.zeros((2, 3)))


@pytest.fixture(scope="module")
def anno_test(shared_hico):
    from scipy.io import loadmat

    return loadmat(shared_hico / "anno.mat", variable_names=["anno_test"])["anno_test"].T  # [9658, 600]


def test_real_hico_perfect_scores_give_100(anno_test):
    assert anno_test.shape == (9658, 600)
    result = hico_classification_map(anno_test == 1, anno_test)
    assert result.num_evaluated == 600 and result.map == pytest.approx(1.0)
    perfect_known = hico_classification_map(anno_test == 1, anno_test, known_object=True, hoi_object=HOI_OBJECT)
    assert perfect_known.map == pytest.approx(1.0)


def test_real_hico_ambiguous_labels_never_change_ap(anno_test):
    rng = np.random.default_rng(0)
    scores = rng.random(anno_test.shape) + 0.5 * (anno_test == 1)
    base = hico_classification_map(scores, anno_test)
    ambiguous = anno_test == 0
    assert ambiguous.sum() == 7872
    for value in (10.0, -10.0):   # ambiguous images pushed to the top, then to the bottom
        moved = hico_classification_map(np.where(ambiguous, value, scores), anno_test)
        np.testing.assert_array_equal(moved.per_class, base.per_class)
    assert 0.2 < base.map < 1.0


def test_real_hico_known_object_at_least_default(anno_test):
    rng = np.random.default_rng(1)
    scores = rng.random(anno_test.shape) + 0.3 * (anno_test == 1)
    default = hico_classification_map(scores, anno_test)
    known = hico_classification_map(scores, anno_test, known_object=True, hoi_object=HOI_OBJECT)
    assert known.map >= default.map
    assert np.all(known.per_class >= default.per_class - 1e-12)
    # per class, by the scalar AP: default drops only the ambiguous images; known object (the official
    # hico_benchmark moves object-absent images to the back) also drops the unknown ones, which on real
    # HICO are exactly the images without the object
    for c in (0, 70, 395, 599):
        col = anno_test[:, c]
        keep = col != 0
        assert default.per_class[c] == pytest.approx(average_precision_11pt(scores[keep, c], col[keep] == 1))
        keep = ~np.isnan(col) & (col != 0)
        assert known.per_class[c] == pytest.approx(average_precision_11pt(scores[keep, c], col[keep] == 1))
    # images without the object only ever add false positives: raising their scores hurts default only
    present = object_present(anno_test, hico_vocabulary().hoi_object)[:, hico_vocabulary().hoi_object]
    boosted = np.where(present, scores, scores + 1.0)
    assert hico_classification_map(boosted, anno_test).map < default.map
    boosted_known = hico_classification_map(boosted, anno_test, known_object=True, hoi_object=HOI_OBJECT)
    assert boosted_known.map == pytest.approx(known.map)


def test_few_shot_subsets_on_real_train_counts(shared_hico):
    from scipy.io import loadmat

    train = loadmat(shared_hico / "anno.mat", variable_names=["anno_train"])["anno_train"]
    counts = (train == 1).sum(axis=1)
    assert [(counts <= k).sum() for k in (1, 5, 10)] == [51, 125, 162]
    per_class = np.arange(600) / 600
    assert subset_map(per_class, np.flatnonzero(counts <= 1)) == (pytest.approx(
        per_class[counts <= 1].mean()), 51)


def test_known_object_needs_the_object_of_each_class():
    with pytest.raises(ValueError, match="known_object needs hoi_object"):
        hico_classification_map(np.zeros((2, 2)), np.array([[1.0, -1.0], [-1.0, 1.0]]), known_object=True)

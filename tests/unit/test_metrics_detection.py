"""HICO-DET mAP: hand-computable cases, the official loop as oracle, and the real test annotations."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pytest

from pipeline.metrics.hoi_detection import box_iou, hicodet_map
from tests.metrics_reference import official_loop_map
from pipeline.schemas import HOI_DETECTIONS
from pipeline.classes.hico_vocab import hico_vocabulary

BOX = [0.0, 0.0, 10.0, 10.0]
TP_THEN_FP_THEN_TP = (6 + 5 * 2 / 3) / 11      # ranks TP, FP, TP with 2 positives


def table(rows, score=True):
    cols = dict(image_id=np.array([r[0] for r in rows], dtype=np.int64),
                hoi=np.array([r[1] for r in rows], dtype=np.int64),
                human_box=np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
                object_box=np.array([r[3] for r in rows], dtype=float).reshape(-1, 4))
    if score:
        cols["score"] = np.array([r[4] for r in rows], dtype=float)
    return cols


def ap0(dets, gts, **kw):
    return hicodet_map(table(dets), table(gts, score=False), rare=[], num_classes=600, **kw).per_class[0]


def test_duplicate_detection_is_a_false_positive():
    gts = [(0, 0, BOX, BOX), (1, 0, BOX, BOX)]
    assert ap0([(0, 0, BOX, BOX, .9), (1, 0, BOX, BOX, .7)], gts) == pytest.approx(1.0)
    dup = [(0, 0, BOX, BOX, .9), (0, 0, BOX, BOX, .8), (1, 0, BOX, BOX, .7)]
    assert ap0(dup, gts) == pytest.approx(TP_THEN_FP_THEN_TP)


def test_best_overlap_pair_is_taken_even_if_already_matched():
    a, b = [0, 0, 10, 10], [2, 0, 12, 10]                # IoU(a, b) = 80 / 120
    gts = [(0, 0, a, a), (0, 0, b, b)]
    near_a = [0.5, 0, 10.5, 10]                          # IoU .905 with a, .739 with b
    assert box_iou(np.array([near_a]), np.array([b]))[0] >= 0.5
    # the second detection's best pair is a, already taken: a false positive although b is free
    assert ap0([(0, 0, a, a, .9), (0, 0, near_a, near_a, .8)], gts) == pytest.approx(6 / 11)
    assert ap0([(0, 0, a, a, .9), (0, 0, b, b, .8)], gts) == pytest.approx(1.0)


def test_detection_on_an_image_without_ground_truth_is_a_false_positive():
    dets = [(5, 0, BOX, BOX, .9), (0, 0, BOX, BOX, .8)]
    # rank 1 FP (recall 0), rank 2 TP: precision .5 at recall 1
    assert ap0(dets, [(0, 0, BOX, BOX)], image_ids=[0, 5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="detections row 0: image_id 5 is not a ground-truth test image"):
        ap0(dets, [(0, 0, BOX, BOX)])


def test_iou_exactly_one_half_counts():
    half = [0.0, 0.0, 10.0, 5.0]                         # 50 / 100
    assert box_iou(np.array([half]), np.array([BOX]))[0] == 0.5
    assert ap0([(0, 0, half, BOX, .9)], [(0, 0, BOX, BOX)]) == 1.0
    below = [0.0, 0.0, 10.0, 4.999]
    assert ap0([(0, 0, below, BOX, .9)], [(0, 0, BOX, BOX)]) == 0.0
    # min over human and object: the object box alone can fail the pair
    assert ap0([(0, 0, BOX, below, .9)], [(0, 0, BOX, BOX)]) == 0.0


def test_other_class_and_missed_pairs():
    gts = [(0, 0, BOX, BOX), (0, 1, BOX, BOX), (1, 1, BOX, BOX)]
    r = hicodet_map(table([(0, 0, BOX, BOX, .9), (0, 1, BOX, BOX, .1)]), table(gts, False), rare=[1],
                    num_classes=600)
    assert r.per_class[0] == 1.0
    assert r.per_class[1] == pytest.approx(6 / 11)       # one of two pairs found, precision 1
    assert np.isnan(r.per_class[2]) and r.num_evaluated == {"full": 2, "rare": 1, "non_rare": 1}
    assert r.full == pytest.approx((1 + 6 / 11) / 2) and r.rare == pytest.approx(6 / 11)
    rec, prec = r.precision_recall(1)
    # one detection of class 1, a true positive: recall 1/2 (of two pairs), precision 1/1
    np.testing.assert_allclose(rec, [0.5])
    np.testing.assert_allclose(prec, [1.0])


def test_known_object_drops_images_without_the_object():
    vocab = hico_vocabulary()
    h = 0
    other_same_object = int(vocab.object_to_hois[vocab.hoi_object[h]][1])
    other_object = int(np.flatnonzero(vocab.hoi_object != vocab.hoi_object[h])[0])
    gts = [(0, h, BOX, BOX), (1, other_same_object, BOX, BOX), (2, other_object, BOX, BOX)]
    dets = [(2, h, BOX, BOX, .9), (1, h, BOX, BOX, .8), (0, h, BOX, BOX, .7)]
    default = hicodet_map(table(dets), table(gts, False), rare=[], num_classes=600)
    known = hicodet_map(table(dets), table(gts, False), rare=[], num_classes=600, known_object=True,
                        hoi_object=vocab.hoi_object)
    assert default.per_class[h] == pytest.approx(1 / 3)  # FP, FP, TP
    assert known.per_class[h] == pytest.approx(0.5)      # image 2 lacks the object: dropped
    assert known.num_detections[h] == 2
    # official rule: the object's images come from the image labels, which may name an image (2) whose
    # boxes lack that object; its detection is then kept as a false positive
    obj = vocab.hoi_object[h]
    labelled = hicodet_map(table(dets), table(gts, False), rare=[], num_classes=600, known_object=True,
                           hoi_object=vocab.hoi_object,
                           object_images=([0, 1, 2], [obj, obj, obj]))
    assert labelled.per_class[h] == pytest.approx(1 / 3) and labelled.num_detections[h] == 3


def test_bad_input_is_a_clear_error():
    gt = table([(0, 0, BOX, BOX)], score=False)
    for value in (np.nan, np.inf):
        with pytest.raises(ValueError, match="detections row 0: score is"):
            hicodet_map(table([(0, 0, BOX, BOX, value)]), gt, rare=[], num_classes=600)
    for hoi in (600, -1):
        with pytest.raises(ValueError, match=rf"detections row 0: hoi {hoi} is outside \[0, 600\)"):
            hicodet_map(table([(0, hoi, BOX, BOX, 1.0)]), gt, rare=[], num_classes=600)
    with pytest.raises(ValueError, match=r"row 1: object_box \[10.0, 0.0, 5.0, 10.0\] has x2 < x1"):
        hicodet_map(table([(0, 0, BOX, BOX, 1.0), (0, 0, BOX, [10, 0, 5, 10], .5)]), gt, rare=[],
                    num_classes=600)
    with pytest.raises(ValueError, match="ground_truth row 0: human_box"):
        hicodet_map(table([(0, 0, BOX, BOX, 1.0)]), table([(0, 0, [0, 9, 5, 1], BOX)], False), rare=[],
                    num_classes=600)
    with pytest.raises(ValueError, match=r"detections: missing column\(s\) \['score'\]"):
        hicodet_map(table([(0, 0, BOX, BOX)], score=False), gt, rare=[], num_classes=600)


def test_empty_detection_table_gives_zero_with_a_warning():
    empty = pa.Table.from_pylist([], schema=HOI_DETECTIONS)
    with pytest.warns(UserWarning, match="empty"):
        r = hicodet_map(empty, table([(0, 0, BOX, BOX)], False), rare=[0], num_classes=600)
    assert r.full == 0.0 and r.rare == 0.0 and r.per_class[0] == 0.0


@pytest.mark.parametrize("dense_limit", [50_000_000, 0])   # the lookup table and the binary-search path
def test_arrow_tables_and_ties_match_the_official_loop(dense_limit, monkeypatch):
    monkeypatch.setattr("pipeline.metrics.hoi_detection.DENSE_TABLE_LIMIT", dense_limit)
    rng = np.random.default_rng(0)
    n_img, n_gt, n_det = 6, 25, 400
    def boxes(n):
        xy = rng.integers(1, 30, size=(n, 2))
        return np.concatenate([xy, xy + rng.integers(3, 20, size=(n, 2))], axis=1).astype(float)
    gt_img, gt_hoi = rng.integers(0, n_img, n_gt), rng.integers(0, 3, n_gt)
    gt_h, gt_o = boxes(n_gt), boxes(n_gt)
    pick = rng.integers(0, n_gt, n_det)
    det_h = np.where(rng.random((n_det, 1)) < .7, gt_h[pick] + rng.integers(-2, 3, (n_det, 4)), boxes(n_det))
    det_o = gt_o[pick] + rng.integers(-2, 3, (n_det, 4))
    det_h[:, 2:] = np.maximum(det_h[:, 2:], det_h[:, :2])
    det_o[:, 2:] = np.maximum(det_o[:, 2:], det_o[:, :2])
    det_img = np.where(rng.random(n_det) < .9, gt_img[pick], rng.integers(0, n_img + 2, n_det))
    det_hoi, score = gt_hoi[pick], rng.integers(0, 20, n_det) / 20.0   # many ties
    shift = np.array([1.0, 1.0, 0.0, 0.0])                                  # 1-based -> pipeline
    dets = pa.table(dict(image_id=det_img, hoi=det_hoi.astype(np.int16),
                         human_box=list(det_h - shift), object_box=list(det_o - shift), score=score))
    gt = table(list(zip(gt_img, gt_hoi, gt_h - shift, gt_o - shift)), False)
    ours = hicodet_map(dets.cast(HOI_DETECTIONS), gt, rare=[], num_classes=600, image_ids=np.arange(n_img + 2))
    ref = official_loop_map(det_img.tolist(), det_hoi, np.hstack([det_h, det_o]).tolist(), score.tolist(),
                            gt_img, gt_hoi, np.hstack([gt_h, gt_o]), [0, 1, 2])
    np.testing.assert_allclose(ours.per_class[:3], ref, rtol=0, atol=1e-12)
    assert 0.05 < ref.min() and ref.max() < 1


@pytest.fixture(scope="module")
def hicodet_test(shared_hico):
    """The real HICO-DET test pairs in the pipeline's box convention, with the file's rare list."""
    raw = json.loads((shared_hico / "instances_test2015.json").read_text())
    rows = [(i, h, bh, bo) for i, a in enumerate(raw["annotation"])
            for bh, bo, h in zip(a["boxes_h"], a["boxes_o"], a["hoi"])]
    gt = table(rows, score=False)
    for key in ("human_box", "object_box"):
        gt[key][:, :2] -= 1.0                          # 1-based inclusive -> continuous, as prepare does
    return gt, raw["rare"], len(raw["filenames"])


def test_real_hicodet_ground_truth_as_detections_scores_100(hicodet_test, shared_hico):
    gt, rare, n_images = hicodet_test
    assert len(gt["hoi"]) == 33405 and len(rare) == 138
    assert set(rare) == set(hico_vocabulary().hicodet_rare)
    dets = dict(gt, score=np.random.default_rng(0).random(len(gt["hoi"])))
    for known in (False, True):
        r = hicodet_map(dets, gt, rare, 600, known_object=known, image_ids=np.arange(n_images),
                        hoi_object=hico_vocabulary().hoi_object)
        assert (r.full, r.rare, r.non_rare) == (1.0, 1.0, 1.0)
        assert r.num_evaluated == {"full": 600, "rare": 138, "non_rare": 462}
    # known object from the anno.mat image labels (official eval_one.m): 118 more (image, object) cells
    from scipy.io import loadmat
    labels = loadmat(shared_hico / "anno.mat", variable_names=["anno_test"])["anno_test"].T
    rows, hois = np.nonzero(labels == 1)
    objects = hico_vocabulary().hoi_object[hois]
    cells = set(zip(rows.tolist(), objects.tolist()))
    gt_cells = set(zip(gt["image_id"].tolist(), hico_vocabulary().hoi_object[gt["hoi"]].tolist()))
    assert gt_cells < cells and len(cells) - len(gt_cells) == 118
    r = hicodet_map(dets, gt, rare, 600, known_object=True, image_ids=np.arange(n_images),
                    object_images=(rows, objects), hoi_object=hico_vocabulary().hoi_object)
    assert r.full == 1.0
    # one false positive above everything on an empty image lowers exactly that class
    fp = {k: np.concatenate([v, v[:1]]) for k, v in dets.items()}
    fp["image_id"][-1], fp["score"][-1] = 152, 2.0      # HICO_test2015_00000153 has no annotation
    r = hicodet_map(fp, gt, rare, 600, image_ids=np.arange(n_images))
    assert r.per_class[gt["hoi"][0]] < 1.0 and (r.per_class < 1.0).sum() == 1


def test_random_scenes_match_the_official_loop_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @st.composite
    def scene(draw):
        n_gt, n_det = draw(st.integers(0, 6)), draw(st.integers(0, 12))
        coord = st.integers(1, 12)

        def box():
            x1, y1, w, h = draw(coord), draw(coord), draw(st.integers(0, 8)), draw(st.integers(0, 8))
            return [x1, y1, x1 + w, y1 + h]
        gt = [(draw(st.integers(0, 2)), draw(st.integers(0, 1)), box() + box()) for _ in range(n_gt)]
        det = [(draw(st.integers(0, 3)), draw(st.integers(0, 1)), box() + box(), draw(st.integers(0, 3)) / 4)
               for _ in range(n_det)]
        return gt, det

    @settings(max_examples=150, deadline=None)
    @given(scene())
    def check(s):
        gt, det = s
        shift = np.array([1.0, 1.0, 0.0, 0.0])
        g = table([(i, h, np.array(b[:4]) - shift, np.array(b[4:]) - shift) for i, h, b in gt], score=False)
        d = table([(i, h, np.array(b[:4]) - shift, np.array(b[4:]) - shift, sc) for i, h, b, sc in det])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = hicodet_map(d, g, rare=[], num_classes=600, image_ids=np.arange(4))
        ref = official_loop_map([x[0] for x in det], np.array([x[1] for x in det], dtype=int),
                                [x[2] for x in det], [x[3] for x in det], g["image_id"], g["hoi"],
                                np.array([b for _, _, b in gt], dtype=float).reshape(-1, 8), [0, 1])
        has_gt = ours.num_positives[:2] > 0
        np.testing.assert_allclose(ours.per_class[:2][has_gt], ref[has_gt], rtol=0, atol=1e-12)

    check()

"""Pair scores, top-k detections, and the batch scorer (images without pairs, boxes in original pixels)."""
import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from pipeline import schemas
from pipeline.model import ModelConfig, build_model
from pipeline.regions.pairs import PairParams, make_pairs
from pipeline.regions.scorer import RegionScorer, ScoreParams
from pipeline.classes.space import ClassInfo, ClassSpace
from pipeline.regions.ranking import pair_scores, top_detections
from pipeline.classes.hico_vocab import hico_vocabulary

VOCAB = hico_vocabulary()
HICO = ClassSpace.hico()
BICYCLE, HORSE = 1, 17  # COCO-80
# A label space of 4 classes that is not HICO's: the gating must come from it, not from 600 HICO rows.
SMALL = ClassSpace([ClassInfo("ride horse", "ride", "horse", HORSE), ClassInfo("feed horse", "feed", "horse", HORSE),
                    ClassInfo("repair bike", "repair", "bicycle", BICYCLE), ClassInfo("wave", "wave", None, None)])


def test_scores_only_on_the_objects_hois_with_the_power():
    logits = np.random.default_rng(0).normal(size=(2, 600))
    s = pair_scores(logits, np.array([0.5, 0.9]), np.array([0.8, 0.4]), np.array([BICYCLE, 0]), HICO, 2.8)
    bike = VOCAB.object_to_hois[VOCAB.coco80_to_object[BICYCLE]]
    assert set(np.flatnonzero(s[0])) == set(bike)
    assert all(VOCAB[h].object == "bicycle" for h in np.flatnonzero(s[0]))
    assert all(VOCAB[h].object == "person" for h in np.flatnonzero(s[1]))
    expect = 1 / (1 + np.exp(-logits[0, bike])) * (0.5 * 0.8) ** 2.8
    np.testing.assert_allclose(s[0, bike], expect, rtol=1e-6)


def test_gating_follows_the_models_own_label_space():
    logits = np.zeros((3, 4))
    s = pair_scores(logits, np.ones(3), np.ones(3), np.array([HORSE, BICYCLE, 0]), SMALL)
    assert (s[0] > 0).tolist() == [True, True, False, False]       # horse: ride / feed horse
    assert (s[1] > 0).tolist() == [False, False, True, False]      # bicycle
    assert not s[2].any()                                          # person: no class of this space


def test_bad_labels_and_shapes_raise():
    with pytest.raises(ValueError, match="COCO-80"):
        pair_scores(np.zeros((1, 600)), np.ones(1), np.ones(1), np.array([80]), HICO)
    with pytest.raises(ValueError, match=r"expected \[P, 600\]"):
        pair_scores(np.zeros((1, 10)), np.ones(1), np.ones(1), np.zeros(1, int), HICO)


def test_top_k_rows_keep_boxes_and_order():
    s = np.zeros((2, 600), np.float32)
    s[0, 5], s[1, 7], s[1, 9] = 0.3, 0.9, 0.1
    hb = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    ob = hb + 100
    t = top_detections(42, s, hb, ob, top_k=2)
    assert t.schema.equals(schemas.HOI_DETECTIONS)
    assert t.column("hoi").to_pylist() == [7, 5]
    assert t.column("human_box").to_pylist() == [[5, 6, 7, 8], [1, 2, 3, 4]]
    assert t.column("object_box").to_pylist()[0] == [105, 106, 107, 108]
    assert t.column("image_id").to_pylist() == [42, 42]
    assert top_detections(1, np.zeros((0, 600), np.float32), hb[:0], ob[:0], 5).num_rows == 0


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None).eval()


def test_scorer_batch_images_without_pairs_and_paths_agree(tiny):
    sizes = [(320.0, 240.0), (100.0, 80.0), (160.0, 128.0)]
    dets = [
        (np.array([[10, 10, 150, 230], [160, 50, 300, 200], [0, 0, 5, 5]]), np.array([0, 0, BICYCLE]),
         np.array([0.9, 0.7, 0.6])),
        (np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)),               # no detections
        (np.array([[0, 0, 80, 128], [90, 10, 200, 100]]), np.array([0, 41]), np.array([0.95, 0.5])),
    ]
    pairs = [make_pairs(b, l, s, w, h, PairParams(), i) for i, ((b, l, s), (w, h)) in enumerate(zip(dets, sizes))]
    assert [len(p) for p in pairs] == [4, 0, 1]
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = {}
    for path in ("shared_prefix", "naive"):
        scorer = RegionScorer(tiny, ScoreParams(top_k=20, path=path), HICO)
        out[path] = scorer.score([10, 11, 12], images, pairs, sizes)
    t = out["shared_prefix"]
    assert t.schema.equals(schemas.HOI_DETECTIONS)
    assert set(t.column("image_id").to_pylist()) == {10, 12}
    assert t.filter(pc.equal(t["image_id"], 10)).num_rows == 20
    # Boxes come back in original pixels; the object box of image 12 was clipped to its 160 px width.
    assert t.filter(pc.equal(t["image_id"], 12)).column("object_box").to_pylist()[0] == [90, 10, 160, 100]
    np.testing.assert_allclose(t.column("score").to_numpy(), out["naive"].column("score").to_numpy(), rtol=1e-5)
    assert t.column("hoi").to_pylist() == out["naive"].column("hoi").to_pylist()


def test_scorer_with_no_pairs_at_all(tiny):
    empty = make_pairs(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 10, 10)
    t = RegionScorer(tiny, ScoreParams()).score([0], torch.zeros(1, 3, 224, 224), [empty], [(10.0, 10.0)])
    assert t.num_rows == 0 and t.schema.equals(schemas.HOI_DETECTIONS)


def test_scorer_refuses_classes_without_objects(tiny):
    with pytest.raises(ValueError, match="involve no COCO object"):
        RegionScorer(tiny, ScoreParams(), ClassSpace([ClassInfo("wave"), ClassInfo("run")]))

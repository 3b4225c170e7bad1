"""The HICO vocabulary: facts of the HICO adapter (prompts: tests/unit/test_prompts.py)."""
import numpy as np
import pytest

from pipeline.classes.hico_vocab import hico_vocabulary


def test_vocabulary_shape_and_lookups():
    v = hico_vocabulary()
    assert len(v) == 600 and len(v.verbs) == 117 and len(v.objects) == 80
    assert v[v.index("ride", "bicycle")].verb_ing == "riding"
    assert sum(len(h) for h in v.object_to_hois) == 600
    assert all(v.hoi_object[h] == o for o, hs in enumerate(v.object_to_hois) for h in hs)
    assert v.coco80_names[0] == "person" and v.coco80_names[1] == "bicycle"
    assert sorted(v.coco80_to_object.tolist()) == list(range(80))
    assert len(v.hicodet_rare) == 138


def test_few_shot_sets_match_the_paper_and_the_official_lists():
    v = hico_vocabulary()
    assert (len(v.few_shot(1)), len(v.few_shot(5)), len(v.few_shot(10))) == (51, 125, 162)
    assert len(v.defr_few1) == 49 and v.defr_few1 < set(v.few_shot(1).tolist())
    assert {v[h].verb + "/" + v[h].object for h in set(v.few_shot(1).tolist()) - v.defr_few1} == \
        {"jump/car", "repair/mouse"}


def test_lookups_name_what_is_wrong():
    v = hico_vocabulary()
    with pytest.raises(KeyError, match="not a HICO HOI"):
        v.index("ride", "pizza")
    with pytest.raises(IndexError):
        v[600]


def test_vocabulary_equals_the_shared_class_lists(shared_hico):
    v = hico_vocabulary()
    rows = [line.split() for line in (shared_hico / "hico_list_hoi.txt").read_text().splitlines()[2:]]
    assert [(int(i) - 1, verb, obj) for i, obj, verb in rows] == \
        [(h, v[h].verb, v[h].object) for h in range(600)]
    assert np.all(v.hoi_verb < 117)

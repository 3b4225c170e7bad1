"""The label space type: HICO's 600 classes, object gating, and the checkpoint round trip."""
import numpy as np
import pytest

from pipeline.classes import ClassInfo, ClassSpace, model_classes
from pipeline.model import ModelConfig
from pipeline.datasets.hico_vocab import hico_vocabulary


def test_hico_space_gates_each_coco_label_to_its_objects_hois():
    space, vocab = ClassSpace.hico(), hico_vocabulary()
    allowed = space.allowed(np.array([0, 1]))  # person, bicycle
    assert allowed.shape == (2, 600)
    for row, coco in zip(allowed, (0, 1)):
        obj = vocab.coco80_to_object[coco]
        assert set(np.flatnonzero(row)) == set(vocab.object_to_hois[obj].tolist())
    with pytest.raises(ValueError, match="not a COCO-80"):
        space.allowed(np.array([80]))


def test_a_space_without_objects_allows_no_pair():
    space = ClassSpace([ClassInfo("rock climbing"), ClassInfo("yoga")])
    assert not space.has_objects and not space.allowed(np.array([0, 5])).any()


def test_checkpoint_config_carries_its_classes():
    space = ClassSpace([ClassInfo("feed cat", "feed", "cat", 15), ClassInfo("walk dog", "walk", "dog", 16)])
    cfg = ModelConfig.from_dict(ModelConfig(num_classes=2, classes=space.to_list()).to_dict())
    assert model_classes(cfg).names == ["feed cat", "walk dog"]
    assert model_classes(ModelConfig()).names[0] == "board airplane"  # legacy 600-row checkpoint = HICO
    with pytest.raises(ValueError, match="3 classes and no class list"):
        model_classes(ModelConfig(num_classes=3))
    with pytest.raises(ValueError, match="lists 2 classes but has 5 rows"):
        model_classes(ModelConfig(num_classes=5, classes=space.to_list()))


def test_space_from_a_classes_table_checks_ids_and_names():
    import pyarrow as pa

    from pipeline.classes import check_classes
    from pipeline.datasets.hico import hico_classes

    assert ClassSpace.from_table(hico_classes()).to_list() == ClassSpace.hico().to_list()
    mpii = pa.table({"hoi": [1, 0], "name": ["yoga", "golf"], "coco80": pa.array([None, None], pa.int16())})
    space = ClassSpace.from_table(mpii)
    assert space.names == ["golf", "yoga"] and not space.has_objects
    with pytest.raises(ValueError, match=r"row 1: hoi 5 is outside \[0, 2\)"):
        check_classes(pa.table({"hoi": [0, 5], "name": ["a", "b"]}), "classes.parquet")
    with pytest.raises(ValueError, match="class 1: name 'a' repeats class 0"):
        check_classes(pa.table({"hoi": [0, 1], "name": ["a", "a"]}))
    old = check_classes(pa.table({"hoi": [0], "verb": ["ride"], "object": ["bicycle"]}))  # before names
    assert old.column("name").to_pylist() == ["ride bicycle"]

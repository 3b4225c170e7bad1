"""The label space type: HICO's 600 classes, object gating, and the checkpoint round trip."""
import numpy as np
import pytest

from pipeline.classes.space import ClassInfo, ClassSpace, model_classes
from pipeline.model import ModelConfig
from pipeline.classes.hico_vocab import hico_vocabulary


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

    from pipeline.classes.space import check_classes
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


def test_a_prepared_classes_table_reads_as_the_space_evaluation_uses(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import storage

    table = pa.table({"hoi": [1, 0, 2], "name": ["feed cat", "walk dog", "yoga"],
                      "object": ["cat", "dog", None], "coco80": pa.array([15, 16, None], pa.int16()),
                      "rare": [True, False, None], "n_train_images": [3, 1, 9],
                      "subsets": [["few1_defr"], [], None]})
    path = tmp_path / "classes.parquet"
    pq.write_table(table.replace_schema_metadata({"defr": json.dumps({"dataset": "table", "label_mode": "single"})}),
                   path)
    space = ClassSpace.from_table(storage.read_parquet(path), str(path))
    assert (space.dataset, space.label_mode, len(space)) == ("table", "single", 3)   # from the prepare metadata
    assert space.names == ["walk dog", "feed cat", "yoga"]                     # class-id order
    assert space.column("n_train_images").tolist() == [1, 3, 9] and space.column("category") is None
    assert space.rare.tolist() == [False, True, False] and space.subsets == {"few1_defr": [1]}
    assert space.has_objects and space.object_index is None                  # yoga has no object
    assert ClassSpace.from_table(table.slice(0, 2)).object_index.tolist() == [1, 0]   # dog, cat
    mpii = ClassSpace.from_table(storage.read_parquet(path), dataset="mpii")
    assert (mpii.dataset, mpii.label_mode) == ("mpii", "single")              # an argument wins

    old = ClassSpace.from_table(table)                                       # before adapters: HICO
    assert (old.dataset, old.label_mode) == ("hico", "multi")
    with pytest.raises(ValueError, match=r"classes.parquet: schema metadata 'defr' is not JSON"):
        ClassSpace.from_table(table.replace_schema_metadata({"defr": "{oops"}), "classes.parquet")
    with pytest.raises(ValueError, match=r"classes.parquet duplicate hoi ids"):
        ClassSpace.from_table(table.set_column(0, "hoi", pa.array([0, 0, 1])), "classes.parquet")


def test_a_space_built_from_its_classes_has_a_table_without_evaluation_columns():
    space = ClassSpace([ClassInfo("feed cat", "feed", "cat", 15), ClassInfo("yoga")])
    assert space.table.column("coco80").to_pylist() == [15, None] and space.dataset is None
    assert space.rare is None and space.subsets == {} and space.column("n_train_images") is None
    assert ClassSpace.hico().dataset == "hico" and ClassSpace.hico().object_index.max() == 79

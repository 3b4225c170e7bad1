"""The ``table`` adapter: a user's own classes (unknown to HICO), labels and boxes, in CSV and JSON Lines,
and the rows and errors for bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.classes.space import ClassSpace
from pipeline.datasets.labels import label_matrix
from pipeline.demo.activities import TABLE_CLASSES, generate_table
from pipeline.datasets.adapters import prepare_dataset
from pipeline.datasets.files import AnnotationError
from pipeline.classes.hico_vocab import hico_vocabulary


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("table") / "raw"
    generate_table(out, n_train=30, n_test=10, seed=2)
    return out


@pytest.fixture
def raw(tiny_table, tmp_path):
    return shutil.copytree(tiny_table, tmp_path / "raw")


def write_csv(path, header: str, *rows: str) -> None:
    path.write_text("\n".join([header, *rows]) + "\n")


def test_own_label_set_with_boxes_prepares(raw):
    out = prepare_dataset("table", str(raw), {"pairs": "pairs.csv"}, val_fraction=0.2)
    names = out.classes.column("name").to_pylist()
    assert names == [c["name"] for c in TABLE_CLASSES.values()]
    hico = {f"{hico_vocabulary()[h].verb} {hico_vocabulary()[h].object}" for h in range(600)}
    assert not set(names) & hico                                     # not HICO's classes
    coco = dict(zip(names, out.classes.column("coco80").to_pylist()))
    assert coco == {"juggle ball": 32, "dribble ball": 32, "shelter under umbrella": 25, "sip from cup": 41,
                    "balance on skateboard": 36}                      # coco_object, else the object's name
    assert out.classes.column("prompt").to_pylist()[2] == "a person sheltering from the rain under an umbrella"
    assert out.rejects.num_rows == 0 and out.images.num_rows == 40
    labels = label_matrix(out.images, 5)
    assert not np.isnan(labels).any() and (labels == 1).sum(axis=1).max() == 2   # multi-label, complete
    assert out.pairs.num_rows == int((labels == 1).sum())             # one box pair per label here
    assert int(out.classes.column("n_train_pairs").to_numpy().sum()) > 0
    assert out.classes.column("rare").null_count == 5                 # no rare split given
    space = ClassSpace.from_table(out.classes)
    assert space.has_objects and space.allowed(np.array([32]))[0].tolist() == [True, True, False, False, False]


def test_json_lines_single_label_prompts_only_and_a_val_split(tmp_path):
    root = tmp_path / "own"
    (root / "images").mkdir(parents=True)
    from PIL import Image

    for i in range(6):
        Image.new("RGB", (20, 10), (i * 40, 0, 0)).save(root / "images" / f"{i}.jpg")
    (root / "classes.jsonl").write_text("\n".join(json.dumps(c) for c in [
        {"name": "sunny", "prompt": "a photo on a sunny day", "category": "weather", "rare": False},
        {"name": "rainy", "prompt": "a photo on a rainy day", "category": "weather", "rare": True}]))
    (root / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"image": "0.jpg", "split": "train", "labels": ["sunny"]},
        {"image": "1.jpg", "split": "train", "label": "rainy"},
        {"image": "2.jpg", "split": "val", "labels": ["rainy"]},
        {"image": "3.jpg", "split": "test", "labels": ["sunny"]},
        {"image": "4.jpg", "split": "test", "labels": ["sunny", "rainy"]},
        {"image": "5.jpg", "split": "train", "labels": ["snowy"]}]))
    out = prepare_dataset("table", str(root), {"classes": "classes.jsonl", "labels": "labels.jsonl",
                                               "label_mode": "single"}, val_fraction=0.5, max_reject_fraction=0.5)
    assert out.images.column("split").to_pylist() == ["train", "train", "val", "test"]   # its own val: no hold-out
    reasons = dict(zip(out.rejects.column("item").to_pylist(), out.rejects.column("reason").to_pylist()))
    assert reasons["4.jpg"].startswith("single-label dataset: the image has 2 labels")
    assert reasons["5.jpg"].startswith("label 'snowy' is not a class of classes.jsonl")
    assert out.classes.column("rare").to_pylist() == [False, True]
    assert out.metadata["label_mode"] == "single"


@pytest.mark.parametrize("header, rows, match", [
    ("name,colour", ["a,red"], r"classes\.csv: unknown column\(s\) \['colour'\]"),
    ("name,verb", ["a,x", "a,y"], r"classes\.csv row 3: class name 'a' repeats row 2"),
    ("name,coco_object", ["a,unicorn"], r"classes\.csv row 2: coco_object 'unicorn' is not a COCO class"),
    ("name,rare", ["a,maybe"], r"classes\.csv row 2: rare = 'maybe'; expected true or false"),
    ("verb", ["x"], r"classes\.csv: unknown column|missing 'name'"),
])
def test_bad_classes_file_names_file_row_and_field(raw, header, rows, match):
    write_csv(raw / "classes.csv", header, *rows)
    with pytest.raises(AnnotationError, match=match):
        prepare_dataset("table", str(raw), {})


def test_bad_labels_and_pairs_name_file_and_row(raw):
    write_csv(raw / "labels.csv", "image,split,label", "train_00000.jpg,train,juggle ball",
              "train_00000.jpg,test,dribble ball")
    with pytest.raises(AnnotationError, match=r"labels\.csv row 3: image train_00000\.jpg has split 'test'"):
        prepare_dataset("table", str(raw), {})
    write_csv(raw / "labels.csv", "image,split,label", "train_00000.jpg,holdout,juggle ball")
    with pytest.raises(AnnotationError, match=r"row 2: split 'holdout'; expected one of"):
        prepare_dataset("table", str(raw), {})
    write_csv(raw / "labels.csv", "image,split,label", "train_00000.jpg,train,juggle ball")
    write_csv(raw / "pairs.csv", "image,label,human_box,object_box",
              'train_00000.jpg,juggle ball,"[1, 2, 3]","[1,2,3,4]"')
    with pytest.raises(AnnotationError, match=r"pairs\.csv row 2: human_box = .*expected \[x1, y1, x2, y2\]"):
        prepare_dataset("table", str(raw), {"pairs": "pairs.csv"})

"""The ``vcoco`` adapter on the real V-COCO train / val structure (synthetic COCO boxes for their annotation
ids), the V-COCO-format demo, and the official results list written from scored pairs."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.files import AnnotationError
from pipeline.datasets.vcoco import VcocoFiles, read_coco_instances, read_vcoco, read_vcoco_dataset
from tests import vcoco_synthetic as syn


@pytest.fixture(scope="module")
def raw(shared_vcoco, tmp_path_factory):
    """Real train (first 60 images) as train, real val (first 60) as test, one instances file for both."""
    root = tmp_path_factory.mktemp("vcoco_raw")
    train = syn.subset(json.loads((shared_vcoco / "vcoco_train.json").read_text()), 60)
    test = syn.subset(json.loads((shared_vcoco / "vcoco_val.json").read_text()), 60)
    a = syn.instances(train, seed=1)
    b = syn.instances(test, seed=2, first_new_id=max(x["id"] for x in a["annotations"]) + 1)
    (root / "vcoco").mkdir()
    (root / "vcoco/train.json").write_text(json.dumps(train))
    (root / "vcoco/test.json").write_text(json.dumps(test))
    (root / "instances.json").write_text(json.dumps({**a, "images": a["images"] + b["images"],
                                                     "annotations": a["annotations"] + b["annotations"]}))
    return root, train, test


def test_classes_labels_and_pairs_follow_the_official_files(raw):
    root, train, test = raw
    data = read_vcoco_dataset(VcocoFiles(str(root), "vcoco/train.json", "", "vcoco/test.json", "instances.json"))
    names = data.classes.column("name").to_pylist()
    assert len(names) == 29 and names[:4] == ["hold_obj", "stand_agent", "sit_instr", "ride_instr"]
    assert {"hit_instr", "hit_obj", "eat_obj", "eat_instr", "cut_instr", "cut_obj", "point_instr"} <= set(names)
    objects = dict(zip(names, data.classes.column("objects").to_pylist()))
    assert objects["hold_obj"] == list(range(80)) and objects["stand_agent"] == list(range(80))
    assert len(objects["ride_instr"]) == 10 and objects["kick_obj"] == [32]          # sports ball
    assert data.classes.column("coco80").to_pylist()[names.index("kick_obj")] == 32
    assert [s.split for s in data.splits] == ["train", "test"]
    # labels of the test split recomputed from the file: positive = someone does it with the role object,
    # ambiguous = done without one annotated, negative otherwise
    part = data.splits[1]
    by_name = {c.name: c for c in part.candidates}
    size = {im["id"]: im["file_name"] for im in read_coco_instances(str(root / "instances.json")).images.values()}
    n = len(test[0]["ann_id"])
    expected_pairs = 0
    for c, name in enumerate(names):
        action, role = name.rsplit("_", 1)
        x = next(x for x in test if x["action_name"] == action)
        rid = np.array(x["role_object_id"]).reshape(len(x["role_name"]), n)
        j = x["role_name"].index(role)
        label, image = np.array(x["label"]), np.array(x["image_id"])
        done = set(image[label == 1].tolist())
        with_object = set(image[(label == 1) & (rid[j] != 0)].tolist()) if j else done
        expected_pairs += int(((label == 1) & (rid[j] != 0)).sum()) if j else 0
        for i in set(image.tolist()):
            cand = by_name[size[i]]
            want = "pos" if i in with_object else "amb" if i in done else "neg"
            got = "pos" if c in cand.positives else "amb" if c in cand.ambiguous else "neg"
            assert got == want and (c in cand.negatives) == (want == "neg"), (name, i)
    assert sum(len(c.pairs) for c in part.candidates) == expected_pairs
    # pairs: the agent's COCO box and its role object's, continuous [x, y, x + w, y + h]
    c = next(c for c in part.candidates if c.pairs)
    h, hb, ob = c.pairs[0]
    assert hb[2] > hb[0] and ob[3] > ob[1] and names[h] != "stand_agent"


def test_missing_images_and_mismatched_splits_are_named(raw, tmp_path):
    root, train, test = raw
    coco = json.loads((root / "instances.json").read_text())
    coco["images"] = coco["images"][1:]
    (tmp_path / "vcoco").mkdir()
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    for f in ("train", "test"):
        (tmp_path / f"vcoco/{f}.json").write_text((root / f"vcoco/{f}.json").read_text())
    with pytest.raises(AnnotationError, match=r"image \d+ is not in .*instances.json"):
        read_vcoco_dataset(VcocoFiles(str(tmp_path), "vcoco/train.json", "", "vcoco/test.json", "instances.json"))
    (tmp_path / "vcoco/test.json").write_text(json.dumps(test[:-1]))
    with pytest.raises(AnnotationError, match="actions and roles differ"):
        read_vcoco_dataset(VcocoFiles(str(root), "vcoco/train.json", "", str(tmp_path / "vcoco/test.json"),
                                      "instances.json"))
    bad = [dict(test[0], role_object_id=test[0]["role_object_id"][:-1])]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(AnnotationError, match="role_object_id has .* values; expected 2 roles"):
        read_vcoco(str(tmp_path / "bad.json"))


def test_demo_writes_the_official_layout(tmp_path):
    from pipeline.demo.vcoco import generate_vcoco

    summary = generate_vcoco(tmp_path, n_train=12, n_test=6, seed=1)
    assert summary["train"]["images"] == 10 and summary["val"]["images"] == 2 and summary["test"]["images"] == 6
    actions = read_vcoco(str(tmp_path / "vcoco/vcoco_test.json"))
    assert len(actions) == 26 and [a.name for a in actions][:2] == ["hold", "stand"]
    coco = read_coco_instances(str(tmp_path / "instances_vcoco_all_2014.json"))
    people = [a for a in coco.annotations if a["category_id"] == 1]
    assert len(people) > len(set(actions[0].ann_id.tolist()) | set(read_vcoco(
        str(tmp_path / "vcoco/vcoco_train.json"))[0].ann_id.tolist()))     # unannotated people exist
    oracle = json.loads((tmp_path / "oracle_boxes.json").read_text())
    assert sorted(oracle) == sorted(coco.images[i]["file_name"] for i in set(actions[0].image_id.tolist()))
    assert all((tmp_path / "images/val2014" / name).exists() for name in oracle)


def test_official_list_of_scored_pairs():
    from pipeline.results.vcoco import official_list

    actions, roles = ["hold", "stand", "eat"], [["agent", "obj"], ["agent"], ["agent", "obj", "instr"]]
    classes = ["hold_obj", "stand_agent", "eat_obj", "eat_instr"]
    box = pa.list_(pa.float32(), 4)
    table = pa.table({"image_id": [0, 0, 0, 1], "hoi": [0, 1, 0, 3],
                      "human_box": pa.array([[0, 0, 10, 20]] * 3 + [[5, 5, 9, 9]], box),
                      "object_box": pa.array([[10, 10, 20, 20], [0, 0, 10, 20], [1, 1, 4, 4], [2, 2, 3, 3]], box),
                      "score": pa.array([0.5, 0.75, 0.25, 0.125], pa.float32())})
    first, second = official_list(table, np.array([42, 43]), classes, actions, roles)
    assert first["image_id"] == 42 and first["person_box"] == [0, 0, 9, 19]          # inclusive pixels
    assert first["hold_obj"] == [10, 10, 19, 19, 0.5] and first["hold_agent"] == 0.5  # its best pair
    assert first["stand_agent"] == 0.75 and np.isnan(first["eat_agent"]) and np.isnan(first["eat_obj"]).all()
    assert second["eat_instr"] == [2, 2, 2, 2, 0.125] and second["eat_agent"] == 0.125
    with pytest.raises(ValueError, match="not trained on V-COCO's classes"):
        official_list(table, np.array([42, 43]), ["hold obj"] + classes[1:], actions, roles)

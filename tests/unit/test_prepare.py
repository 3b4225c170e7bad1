"""prepare (HICO adapter) on a tiny generated demo, clean and deliberately broken; loss thresholds."""
import json
import shutil

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
import yaml

from pipeline.datasets.labels import label_matrix
from pipeline.demo.scenes import generate
from pipeline.datasets.adapters import prepare_dataset as prepare_any
from pipeline.datasets.files import AnnotationError
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.datasets.hicodet import read_anno_bbox_mat
from pipeline.rejects import DataLossError

VOCAB = hico_vocabulary()
FILES = {"anno": "anno.mat", "hicodet_train": "instances_train2015.json",
         "hicodet_test": "instances_test2015.json"}


def prepare_dataset(root, files=None, **kw):
    """The HICO adapter through the adapters' entry point."""
    return prepare_any("hico", str(root), FILES if files is None else files, **kw)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "raw"
    generate(out, VOCAB, n_train=20, n_test=6, seed=3)
    return out


@pytest.fixture
def raw(tiny_raw, tmp_path):
    return shutil.copytree(tiny_raw, tmp_path / "raw")


def reasons(out):
    return out.rejects.column("reason").to_pylist()


def test_clean_demo_round_trips_labels_and_boxes(raw):
    out = prepare_dataset(raw, val_fraction=0.2, seed=0)
    assert out.rejects.num_rows == 0
    assert out.images.num_rows == 26
    assert out.images.column("split").to_pylist().count("val") == 4
    mat = scipy.io.loadmat(raw / "anno.mat")
    labels = label_matrix(out.images, 600)
    expected = np.concatenate([mat["anno_train"].T, mat["anno_test"].T])
    assert np.array_equal(np.isnan(labels), np.isnan(expected))
    assert np.array_equal(np.nan_to_num(labels, nan=9), np.nan_to_num(expected, nan=9))
    ann = json.loads((raw / "instances_train2015.json").read_text())
    assert out.pairs.num_rows == sum(len(a["hoi"]) for a in ann["annotation"]) + \
        sum(len(a["hoi"]) for a in json.loads((raw / "instances_test2015.json").read_text())["annotation"])
    b = ann["annotation"][0]["boxes_h"][0]
    assert out.pairs.column("human_box")[0].as_py() == [b[0] - 1, b[1] - 1, b[2], b[3]]
    assert out.classes.num_rows == 600 and out.classes.column("n_train_pairs").to_numpy().sum() > 0


def test_missing_truncated_and_resized_images_are_rejected_with_reasons(raw):
    folder = raw / "images" / "train2015"
    (folder / "HICO_train2015_00000001.jpg").unlink()
    data = (folder / "HICO_train2015_00000002.jpg").read_bytes()
    (folder / "HICO_train2015_00000002.jpg").write_bytes(data[: len(data) // 2])
    from PIL import Image
    Image.new("RGB", (33, 21)).save(folder / "HICO_train2015_00000003.jpg")
    out = prepare_dataset(raw)
    r = reasons(out)
    assert out.images.num_rows == 23 and out.rejects.num_rows == 3
    assert r[0].startswith("missing image file") and "pairs dropped" in r[0]
    assert r[1].startswith("cannot decode image")
    assert r[2].startswith("image is 33x21 but the annotation says")


def test_bad_boxes_and_duplicate_names_are_rejected(raw):
    path = raw / "instances_train2015.json"
    ann = json.loads(path.read_text())
    w, h = ann["size"][0]
    ann["annotation"][0]["boxes_o"][0] = [50, 40, 10, 60]          # x2 < x1
    ann["annotation"][1]["boxes_h"][0] = [1, 1, w + 30, h]          # outside the image
    ann["filenames"].append(ann["filenames"][4])
    ann["size"].append(ann["size"][4])
    ann["annotation"].append(ann["annotation"][4])
    path.write_text(json.dumps(ann))
    out = prepare_dataset(raw)
    r = reasons(out)
    assert any(x.startswith("inverted or empty box") for x in r)
    assert any("lies outside the" in x for x in r)
    assert any(x.startswith("duplicate image name") for x in r)
    assert out.images.num_rows == 26


def test_malformed_anno_mat_names_file_and_field(raw):
    mat = scipy.io.loadmat(raw / "anno.mat")
    bad = dict(mat, anno_train=mat["anno_train"][:, :5])
    scipy.io.savemat(raw / "anno.mat", {k: v for k, v in bad.items() if not k.startswith("__")})
    with pytest.raises(AnnotationError, match=r"anno\.mat: field 'anno_train' has shape \(600, 5\)"):
        prepare_dataset(raw)
    scipy.io.savemat(raw / "anno.mat", {k: v for k, v in mat.items() if k not in ("list_test",) and
                                        not k.startswith("__")})
    with pytest.raises(AnnotationError, match=r"missing field\(s\) \['list_test'\]"):
        prepare_dataset(raw)
    scipy.io.savemat(raw / "anno.mat", {**{k: v for k, v in mat.items() if not k.startswith("__")},
                                        "anno_test": np.where(np.isnan(mat["anno_test"]), 2.0, mat["anno_test"])})
    with pytest.raises(AnnotationError, match="'anno_test' holds value 2.0"):
        prepare_dataset(raw)


def test_hoi_id_out_of_range_is_an_error(raw):
    path = raw / "instances_test2015.json"
    ann = json.loads(path.read_text())
    ann["annotation"][0]["hoi"][0] = 600
    path.write_text(json.dumps(ann))
    with pytest.raises(AnnotationError, match=r"instances_test2015\.json: image .* HOI id 600 outside"):
        prepare_dataset(raw)


def test_labels_derived_from_boxes_when_no_anno_mat(raw):
    out = prepare_dataset(raw, {**FILES, "anno": ""})
    labels = label_matrix(out.images, 600)
    assert np.nansum(labels == 1) > 0 and not np.any(labels == 0)


def test_anno_bbox_mat_form_reads_the_same_pairs(raw, tmp_path):
    """The original anno_bbox.mat layout (x1, x2, y1, y2 fields; connection) gives the json's pairs."""
    ann = json.loads((raw / "instances_test2015.json").read_text())
    entries = []
    for name, (w, h), a in zip(ann["filenames"], ann["size"], ann["annotation"]):
        hois = []
        for hoi, bh, bo in zip(a["hoi"], a["boxes_h"], a["boxes_o"]):
            box = lambda b: {"x1": b[0], "x2": b[2], "y1": b[1], "y2": b[3]}
            hois.append({"id": hoi + 1, "bboxhuman": [box(bh)], "bboxobject": [box(bo)],
                         "connection": np.array([[1, 1]]), "invis": 0})
        entries.append({"filename": name, "size": {"width": w, "height": h, "depth": 3},
                        "hoi": np.array(hois, dtype=object)})
    scipy.io.savemat(tmp_path / "anno_bbox.mat", {"bbox_test": np.array(entries, dtype=object)})
    images = read_anno_bbox_mat(str(tmp_path / "anno_bbox.mat"), "test")
    assert [im.file_name for im in images] == ann["filenames"]
    got = [(im.hois, im.human_boxes, im.object_boxes) for im in images]
    want = [(a["hoi"], [[b[0] - 1, b[1] - 1, b[2], b[3]] for b in a["boxes_h"]],
             [[b[0] - 1, b[1] - 1, b[2], b[3]] for b in a["boxes_o"]]) for a in ann["annotation"]]
    assert got == want


def test_fsspec_memory_root(raw):
    fs = fsspec.filesystem("memory")
    for p in raw.rglob("*"):
        if p.is_file():
            fs.pipe(f"/demo/{p.relative_to(raw)}", p.read_bytes())
    out = prepare_dataset("memory://demo")
    assert out.images.num_rows == 26 and out.rejects.num_rows == 0
    assert out.images.column("uri")[0].as_py().startswith("memory://demo/images/train2015/")


def test_classes_table_is_the_label_space_with_hico_facts(raw):
    out = prepare_dataset(raw)
    c = out.classes
    assert c.column("name").to_pylist()[VOCAB.index("ride", "bicycle")] == "ride bicycle"
    few1 = [h for h, s in enumerate(c.column("subsets").to_pylist()) if "few1_defr" in s]
    assert sorted(few1) == sorted(VOCAB.defr_few1) and len(few1) == 49
    assert c.column("coco80").to_pylist()[VOCAB.index("ride", "bicycle")] == 1
    assert c.column("category").null_count == 600 and c.column("prompt").null_count == 600
    assert out.metadata == {"dataset": "hico", "label_mode": "multi"}


def test_entries_without_pair_fields_are_rejected_with_their_reason(raw):
    """A box annotation entry that lacks its pair fields ({}) loses its pairs: a reject row, not an image
    silently taken as one without pairs."""
    path = raw / "instances_test2015.json"
    ann = json.loads(path.read_text())
    lost = sum(len(ann["annotation"][i]["hoi"]) for i in (0, 1))
    ann["annotation"][0] = {}
    ann["annotation"][1] = {"boxes_h": []}
    path.write_text(json.dumps(ann))
    clean = sum(len(a["hoi"]) for a in json.loads((raw / "instances_train2015.json").read_text())["annotation"])
    out = prepare_dataset(raw, max_reject_fraction=0.5)
    rows = out.rejects.to_pylist()
    assert [r["item"] for r in rows] == ann["filenames"][:2]
    assert all("has no field(s)" in r["reason"] and "pairs are unknown" in r["reason"] for r in rows)
    assert out.images.num_rows == 24 and lost > 0
    assert out.pairs.num_rows == clean + sum(len(a.get("hoi", [])) for a in ann["annotation"][2:])
    assert out.summary and out.summary[0].startswith("test split images: 2 of 6 rejected")


def test_a_split_that_loses_too_much_fails_before_anything_is_written(raw, tmp_path, caplog):
    """A typo in the train images folder rejects every train image: prepare fails, naming the count and
    the reason, and writes nothing; below the threshold it writes and says how many it lost."""
    from stages import prepare

    params = {"prepare": {"dataset": "hico", "root": str(raw), "val_fraction": 0.1,
                          "hico": {**FILES, "train_images": "images/train2051"}},
              "checks": {"max_reject_fraction": 0.05}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "prepared"
    with pytest.raises(DataLossError, match=r"train split images: 20 of 20 rejected .*missing image file \(20\)"):
        prepare.main(["--params", str(path), "--out", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".prepared*"))
    params["prepare"]["hico"]["train_images"] = "images/train2015"
    (raw / "images" / "train2015" / "HICO_train2015_00000001.jpg").unlink()
    params["checks"]["max_reject_fraction"] = 0.04
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(DataLossError, match=r"train split images: 1 of 20 rejected \(5.0 %\)"):
        prepare.main(["--params", str(path), "--out", str(out)])
    params["checks"]["max_reject_fraction"] = 0.05          # 1 of 20 is not more than 5 %
    path.write_text(yaml.safe_dump(params))
    caplog.clear()
    summary = prepare.main(["--params", str(path), "--out", str(out)])
    assert summary["rejects"] == 1 and summary["images"]["train"] + summary["images"]["val"] == 19
    assert any(r.getMessage().startswith("train split images: 1 of 20 rejected (5.0 %); top reasons: missing "
                                         "image file (1)") for r in caplog.records)
    meta = json.loads(pq.read_schema(out / "classes.parquet").metadata[b"defr"])
    assert meta["dataset"] == "hico" and meta["demo_only"] is False


def test_old_flat_hico_keys_are_refused_with_their_new_place(tmp_path):
    from stage_support import params as P

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"prepare": {"hico_anno": "anno.mat", "train_images": "x"}}))
    with pytest.raises(P.ParamsError) as e:
        P.load("prepare", str(path))
    assert "prepare.hico_anno: this key moved to prepare.hico.anno" in str(e.value)
    assert "prepare.train_images: this key moved to prepare.hico.train_images" in str(e.value)

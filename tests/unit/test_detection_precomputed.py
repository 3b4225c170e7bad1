"""Importing detections: the HICO-DET literature's per-image JSON and a generic Parquet / CSV table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from pipeline.detection.precomputed import read_precomputed

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "hico_json_detections"


def _images(n=4):
    return pa.table({"image_id": list(range(n)),
                     "file_name": [f"HICO_test2015_{i + 1:08d}.jpg" for i in range(n)],
                     "width": [640] * n, "height": [480] * n})


def test_reads_the_literature_format_fixture():
    dets, rejects, meta = read_precomputed("hico_json", str(ASSETS), _images(4), "hico80")
    by_id = {d.image_id: d for d in dets}
    assert sorted(by_id) == [0, 1, 2]
    assert by_id[0].labels.tolist() == [0, 3, 1]  # person, motorcycle, bicycle in COCO-80
    assert by_id[0].scores[0] == pytest.approx(0.9986128211021423)
    assert by_id[0].boxes[0].tolist() == pytest.approx([207.52871704101562, 32.01387023925781,
                                                        394.6361389160156, 478.86376953125])
    assert len(by_id[2].boxes) == 0
    # image 4 has no file: rejected, named, not silently empty
    assert rejects == [(str(ASSETS / "HICO_test2015_00000004.json"), "HICO_test2015_00000004.jpg",
                        "no detection file for this image")]
    assert meta == {"files_not_in_image_list": 0}


def test_files_outside_the_image_list_are_counted():
    _, _, meta = read_precomputed("hico_json", str(ASSETS), _images(2), "hico80")
    assert meta["files_not_in_image_list"] == 1


def test_malformed_files_are_rejected_and_wrong_label_space_is_an_error(tmp_path):
    (tmp_path / "HICO_test2015_00000001.json").write_text("{not json")
    (tmp_path / "HICO_test2015_00000002.json").write_text(json.dumps(
        {"boxes": [[0, 0, 1, 1]], "labels": [1, 2], "scores": [0.5]}))
    (tmp_path / "HICO_test2015_00000003.json").write_text(json.dumps({"boxes": []}))
    dets, rejects, _ = read_precomputed("hico_json", str(tmp_path), _images(3), "hico80")
    assert dets == []
    assert [r[2].split(":")[0] for r in rejects] == ["not valid JSON", "lengths differ",
                                                       "expected a JSON object with keys boxes, labels, scores"]
    (tmp_path / "HICO_test2015_00000001.json").write_text(json.dumps(
        {"boxes": [[0, 0, 1, 1]], "labels": [85], "scores": [0.5]}))
    with pytest.raises(ValueError, match=r"HICO_test2015_00000001.json \(detect.precomputed.label_space\)"):
        read_precomputed("hico_json", str(tmp_path), _images(1), "hico80")


def test_missing_directory_and_bad_format_name_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="detect.precomputed.path"):
        read_precomputed("hico_json", str(tmp_path / "nope"), _images(1), "hico80")
    with pytest.raises(ValueError, match="detect.precomputed.format"):
        read_precomputed("coco_json", str(tmp_path), _images(1), "hico80")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_generic_table_by_file_name_with_rejects_for_unknown_images(tmp_path, suffix):
    table = pa.table({"file_name": ["HICO_test2015_00000002.jpg", "HICO_test2015_00000002.jpg", "other.jpg"],
                      "x1": [1.0, 2.0, 3.0], "y1": [1.0, 2.0, 3.0], "x2": [10.0, 20.0, 30.0],
                      "y2": [10.0, 20.0, 30.0], "label": [1, 1, 1], "score": [0.9, 0.8, 0.7]})
    path = tmp_path / f"dets.{suffix}"
    (pacsv.write_csv if suffix == "csv" else pq.write_table)(table, path)
    dets, rejects, meta = read_precomputed("table", str(path), _images(3), "coco91")
    by_id = {d.image_id: d for d in dets}
    assert len(by_id[1].boxes) == 2 and by_id[1].labels.tolist() == [0, 0]  # coco91 1 = person
    assert len(by_id[0].boxes) == 0 and meta["rows"] == 3
    assert rejects == [(str(path), "row 2", "file_name 'other.jpg' is not an image of the image list")]


def test_generic_table_by_image_id_and_box_column(tmp_path):
    table = pa.table({"image_id": [0, 9], "box": [[1, 2, 3, 4], [1, 2, 3, 4]], "label": [0, 5],
                      "score": [0.5, 0.6]})
    pq.write_table(table, tmp_path / "d.parquet")
    dets, rejects, _ = read_precomputed("table", str(tmp_path / "d.parquet"), _images(2), "coco80")
    assert np.asarray(dets[0].boxes).tolist() == [[1, 2, 3, 4]]
    assert rejects[0][1:] == ("row 1", "image_id 9 is not an image of the image list")
    pq.write_table(table.drop(["score"]), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        read_precomputed("table", str(tmp_path / "e.parquet"), _images(2), "coco80")


def _named(names):
    return pa.table({"image_id": list(range(len(names))), "file_name": names})


def test_boxes_json_by_file_name_with_coco_names(tmp_path):
    doc = {"a.jpg": [{"category": "person", "box": [1, 2, 30, 40], "score": 0.9},
                     {"category": "Traffic Light", "box": [5, 5, 9, 9]}],         # another spelling; no score
           "sub/b.jpg": [],                                                      # found by its last path part
           "c.jpg": [{"category": "dog", "box": [1, 2, 3]}],                     # malformed: rejected
           "z.jpg": []}                                                          # not an input: counted
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    dets, rejects, meta = read_precomputed("boxes_json", str(tmp_path / "boxes.json"),
                                           _named(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]), "coco80")
    by_id = {d.image_id: d for d in dets}
    assert sorted(by_id) == [0, 1]
    assert by_id[0].labels.tolist() == [0, 9] and by_id[0].scores.tolist() == [0.9, 1.0]
    assert by_id[0].boxes.tolist() == [[1, 2, 30, 40], [5, 5, 9, 9]] and len(by_id[1].boxes) == 0
    assert [(r[1], r[2].split(":")[0]) for r in rejects] == [("c.jpg", "entry 0"),
                                                             ("d.jpg", "no entry for this image in the boxes file")]
    assert meta == {"entries_not_in_image_list": 1}


def test_boxes_json_unknown_category_is_an_error_naming_it(tmp_path):
    (tmp_path / "boxes.json").write_text(json.dumps({"a.jpg": [{"category": "hors", "box": [0, 0, 1, 1]}]}))
    with pytest.raises(ValueError, match=r"image 'a.jpg', entry 0: category 'hors' is not a COCO class .*horse"):
        read_precomputed("boxes_json", str(tmp_path / "boxes.json"), _named(["a.jpg"]), "coco80")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="expected image file name -> list of"):
        read_precomputed("boxes_json", str(tmp_path / "list.json"), _named(["a.jpg"]), "coco80")


def test_the_shared_photos_boxes_file(shared_photos):
    dets, rejects, _ = read_precomputed("boxes_json", str(shared_photos / "boxes.json"),
                                        _named(["person.jpg", "dog.jpg", "horses.jpg"]), "coco80")
    assert rejects == []
    labels = {d.image_id: d.labels.tolist() for d in dets}
    assert labels == {0: [0, 16, 17], 1: [16, 1, 7], 2: [17] * 5}   # person, dog, horse; dog, bicycle, truck

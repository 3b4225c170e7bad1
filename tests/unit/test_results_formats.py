"""defr evaluate's readers: the same detections in every format give the same numbers as the project's
evaluator (real HICO-DET test annotations when present, a small hand-made test set otherwise), reject rows
for every reason, the MAT reader against scipy-written files, and the restricted unpickler."""
from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io

from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.metrics import hicodet_map
from pipeline.rejects import DataLossError
from pipeline.results import ReadOptions, detect_format, read_detections, read_test_set
from pipeline.results.detr_lists import RestrictedUnpickler
from pipeline.results.mat_cells import read_cell_array
from tests.result_writers import write_detr_list, write_mat_cache, write_table

VOCAB = hico_vocabulary()
RIDE_BICYCLE = VOCAB.index("ride", "bicycle")      # 0-based HOI ids
HOLD_APPLE = VOCAB.index("hold", "apple")


def small_anno(tmp_path) -> str:
    """A 4-image test set in the pocket/UPT form (1-based boxes, 0-based HOI ids); image 3 has no pairs."""
    data = {"filenames": [f"HICO_test2015_0000000{i}.jpg" for i in (1, 2, 3, 4)],
            "size": [[640, 480]] * 4, "empty": [2], "rare": [RIDE_BICYCLE],
            "annotation": [
                {"hoi": [RIDE_BICYCLE, RIDE_BICYCLE], "boxes_h": [[11, 21, 110, 220], [301, 41, 400, 240]],
                 "boxes_o": [[21, 121, 130, 300], [311, 141, 420, 330]], "object": [0, 0], "verb": [0, 0]},
                {"hoi": [HOLD_APPLE], "boxes_h": [[1, 1, 50, 100]], "boxes_o": [[41, 61, 60, 80]],
                 "object": [0], "verb": [0]},
                {"hoi": [], "boxes_h": [], "boxes_o": [], "object": [], "verb": []},
                {"hoi": [HOLD_APPLE], "boxes_h": [[101, 101, 200, 300]], "boxes_o": [[151, 201, 170, 230]],
                 "object": [0], "verb": [0]}]}
    path = tmp_path / "instances_test2015.json"
    path.write_text(json.dumps(data))
    return str(path)


def small_detections(test) -> dict:
    """Detections on the small test set: matches, a duplicate, a miss, one on the image without pairs."""
    g = test.pairs
    rows = []   # (image, hoi, human, object, score)
    for k in range(len(g["hoi"])):
        rows.append((g["image_id"][k], g["hoi"][k], g["human_box"][k] + [2, -1, 3, 0], g["object_box"][k] + 1,
                     0.9 - k / 10))
    rows.append((0, RIDE_BICYCLE, g["human_box"][0], g["object_box"][0], 0.95))          # duplicate, ranks first
    rows.append((1, HOLD_APPLE, g["human_box"][2] + 40, g["object_box"][2], 0.5))         # a miss
    rows.append((2, HOLD_APPLE, np.array([0, 0, 10, 10.0]), np.array([5, 5, 8, 9.5]), 0.8))  # image without pairs
    return {"image_id": np.array([r[0] for r in rows]), "hoi": np.array([r[1] for r in rows]),
            "human_box": np.array([r[2] for r in rows], float), "object_box": np.array([r[3] for r in rows], float),
            "score": np.array([r[4] for r in rows], float)}


def every_format(det: dict, test, folder) -> dict[str, tuple[str, ReadOptions]]:
    """The same detections written in every format: {name: (path, options)}."""
    out = {}
    for ext in ("csv", "jsonl", "parquet"):
        write_table(det, test.file_names, folder / f"dets.{ext}")
        out[ext] = (str(folder / f"dets.{ext}"), ReadOptions())
    for order in ("hico", "coco"):
        write_mat_cache(det, test.num_images, folder / f"mat_{order}", order)
        out[f"mat_{order}"] = (str(folder / f"mat_{order}"), ReadOptions())
    write_mat_cache(det, test.num_images, folder / "mat_single", "hico", dtype=np.float32)
    out["mat_float32"] = (str(folder / "mat_single"), ReadOptions())
    write_detr_list(det, test.file_names, folder / "qpic.json", "verb")
    out["detr_verb"] = (str(folder / "qpic.json"), ReadOptions())
    write_detr_list(det, test.file_names, folder / "genvlkt.json", "hoi", with_names=False)
    out["detr_hoi_unnamed"] = (str(folder / "genvlkt.json"), ReadOptions())
    entries = json.loads((folder / "qpic.json").read_text())
    for e in entries:   # pickled as NumPy arrays, as forks that pickle their result lists do
        for p in e["predictions"]:
            p["bbox"] = np.asarray(p["bbox"], dtype=np.float64)
    (folder / "qpic.pkl").write_bytes(pickle.dumps(entries))
    out["detr_pickle"] = (str(folder / "qpic.pkl"), ReadOptions())
    # the pipeline's own hoi_detections.parquet, image ids of a prepared dataset (here 1000 + test index)
    box = pa.list_(pa.float32(), 4)
    pq.write_table(pa.table({"image_id": det["image_id"] + 1000, "hoi": det["hoi"].astype(np.int16),
                             "human_box": pa.array(det["human_box"].tolist(), box),
                             "object_box": pa.array(det["object_box"].tolist(), box), "score": det["score"]}),
                   folder / "hoi_detections.parquet")
    pq.write_table(pa.table({"image_id": np.arange(test.num_images) + 1000, "file_name": test.file_names}),
                   folder / "images.parquet")
    out["pipeline"] = (str(folder / "hoi_detections.parquet"), ReadOptions(images=str(folder / "images.parquet")))
    return out


def scores(det, test, **kw):
    ids = np.arange(test.num_images)
    table = det.table() if hasattr(det, "table") else det
    return (hicodet_map(table, test.pairs, test.rare, 600, image_ids=ids),
            hicodet_map(table, test.pairs, test.rare, 600, known_object=True, image_ids=ids,
                        hoi_object=VOCAB.hoi_object, object_images=test.object_images))


def assert_same(a, b):
    for x, y in zip(a, b):
        assert np.array_equal(x.per_class, y.per_class, equal_nan=True)
        assert (x.full, x.rare, x.non_rare) == (y.full, y.rare, y.non_rare)


def test_every_format_gives_the_evaluators_numbers_on_a_small_test_set(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    det = small_detections(test)
    reference = scores(det, test)
    assert 0 < reference[0].full < 1      # the duplicate and the miss cost something
    for name, (path, options) in every_format(det, test, tmp_path).items():
        got = read_detections(path, test, "auto", options)
        assert len(got.rejects) == 0 and len(got) == len(det["hoi"]), name
        assert_same(scores(got, test), reference)


@pytest.mark.slow
def test_every_format_gives_the_evaluators_numbers_on_the_real_test_set(shared_hico, tmp_path):
    from bench.bench_evaluate import load_ground_truth, make_detections, to_pipeline

    test = read_test_set(str(shared_hico / "instances_test2015.json"), str(shared_hico / "anno.mat"))
    img, hoi, boxes, _, n = load_ground_truth(shared_hico / "instances_test2015.json")
    di, dh, db, ds = make_detections(img, hoi, boxes, n, total=110_000)
    conv = to_pipeline(db)
    keep = np.arange(0, len(di), 3)    # a third keeps the test short; every class still has detections
    det = {"image_id": di[keep], "hoi": dh[keep], "human_box": conv[keep, :4], "object_box": conv[keep, 4:],
           "score": ds[keep]}
    reference = scores(det, test)
    assert reference[0].num_evaluated["full"] == 600 and 0.3 < reference[0].full < 0.95
    for name, (path, options) in every_format(det, test, tmp_path).items():
        if name == "mat_float32":
            continue   # float32 rounds the fractional scores; covered on the small set
        got = read_detections(path, test, "auto", options)
        assert len(got.rejects) == 0, name
        assert_same(scores(got, test), reference)


def test_known_object_uses_anno_mat_labels_when_given(shared_hico):
    with_labels = read_test_set(str(shared_hico / "instances_test2015.json"), str(shared_hico / "anno.mat"))
    pairs_only = read_test_set(str(shared_hico / "instances_test2015.json"))
    cells = lambda t: len(set(zip(t.object_images[0].tolist(), t.object_images[1].tolist())))  # noqa: E731
    assert cells(with_labels) == 9827 and cells(with_labels) - cells(pairs_only) == 118
    assert with_labels.num_images == 9658 and len(with_labels.pairs["hoi"]) == 33405
    assert with_labels.rare.sum() == 138


def test_format_detection(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    formats = {name: detect_format(path) for name, (path, _) in every_format(small_detections(test), test,
                                                                              tmp_path).items()}
    assert formats == {"csv": "table", "jsonl": "table", "parquet": "table", "mat_hico": "mat", "mat_coco": "mat",
                       "mat_float32": "mat", "detr_verb": "detr", "detr_hoi_unnamed": "detr", "detr_pickle": "detr",
                       "pipeline": "pipeline"}
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(str(tmp_path))


def test_mat_reader_equals_scipy_on_scipy_written_files(tmp_path):
    rng = np.random.default_rng(0)
    cells = np.empty((3, 7), dtype=object)
    for k in range(cells.size):
        cells.flat[k] = np.zeros((0, 0))
    cells[0, 2] = rng.random((4, 9))
    cells[2, 6] = rng.random((1, 9)).astype(np.float32)
    cells[1, 0] = np.arange(18.0).reshape(2, 9)
    for compress in (False, True):
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"other": np.ones(3), "all_boxes": cells}, do_compression=compress)
        got = read_cell_array(buf.getvalue(), "all_boxes")
        assert got.shape == (3, 7)
        expect = {k: np.asarray(c, np.float64) for k, c in enumerate(cells.reshape(-1, order="F")) if np.size(c)}
        assert got.index.tolist() == sorted(expect)
        assert np.array_equal(got.data, np.concatenate([expect[k] for k in sorted(expect)]))
        assert got.count.tolist() == [len(expect[k]) for k in sorted(expect)]


def test_mat_object_order_is_told_from_row_counts_or_refused(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    det = small_detections(test)
    write_mat_cache(det, test.num_images, tmp_path / "ho", "coco")
    got = read_detections(str(tmp_path / "ho"), test)
    assert "object order coco" in got.notes[0]
    with pytest.raises(ValueError, match="has .* rows but object"):
        read_detections(str(tmp_path / "ho"), test, options=ReadOptions(mat_object_order="hico"))
    # one file whose row count fits both numberings cannot be told apart
    both = [nn for nn in range(1, 81) if len(VOCAB.object_to_hois[nn - 1])
            == len(VOCAB.object_to_hois[VOCAB.coco80_to_object[nn - 1]]) and VOCAB.coco80_to_object[nn - 1] != nn - 1]
    if both:
        single = tmp_path / "one"
        single.mkdir()
        (single / f"detections_{both[0]:02d}.mat").write_bytes((tmp_path / "ho" / f"detections_{both[0]:02d}.mat")
                                                                .read_bytes())
        with pytest.raises(ValueError, match="fit both"):
            read_detections(str(single), test)


def test_mat_with_wrong_number_of_images_is_refused(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    write_mat_cache(small_detections(test), test.num_images + 1, tmp_path / "m")
    with pytest.raises(ValueError, match="5 columns; the test set has 4 images"):
        read_detections(str(tmp_path / "m"), test)


def _reasons(det) -> list[str]:
    return sorted(r["reason"] for r in det.rejects)


def test_table_rejects_each_bad_row_with_its_reason(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    good = '"[11, 21, 110, 220]","[21, 121, 130, 300]"'
    lines = ["image,hoi,human_box,object_box,score",
             f"HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},{good},0.9",          # kept
             f"HICO_test2015_09999999.jpg,{RIDE_BICYCLE + 1},{good},0.9",          # not a test image
             f"HICO_test2015_00000001.jpg,601,{good},0.9",                         # HOI id out of range
             f"HICO_test2015_00000001.jpg,0,{good},0.9",                           # HOI id out of range
             f"HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},{good},nan",          # NaN score
             f"HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},{good},",             # missing score
             f'HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},"[110, 21, 11, 220]","[21, 121, 130, 300]",0.9',  # x2 < x1
             f'HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},"[11, 21, 110]","[21, 121, 130, 300]",0.9',  # 3 numbers
             f'HICO_test2015_00000001.jpg,{RIDE_BICYCLE + 1},"[11, 21, 110, 220]","[a, b, c, d]",0.9']     # text
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    det = read_detections(str(tmp_path / "bad.csv"), test)
    assert len(det) == 1 and det.total == 9
    assert _reasons(det) == sorted(["image is not in the test set", "HOI id is outside 1..600",
                                    "HOI id is outside 1..600", "score is not a finite number",
                                    "score is not a finite number"]
                                   + ["human box is malformed (not 4 finite numbers with x1 <= x2, y1 <= y2)"] * 2
                                   + ["object box is malformed (not 4 finite numbers with x1 <= x2, y1 <= y2)"])
    items = {r["item"] for r in det.rejects}
    assert "row 3 (HICO_test2015_09999999.jpg)" in items     # the CSV header is row 1


def test_jsonl_nan_score_is_a_reject_not_a_crash(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    row = {"image": "HICO_test2015_00000001.jpg", "hoi": RIDE_BICYCLE + 1, "human_box": [11, 21, 110, 220],
           "object_box": [21, 121, 130, 300]}
    (tmp_path / "d.jsonl").write_text(json.dumps(row | {"score": 0.5}) + "\n"
                                      + json.dumps(row | {"score": float("nan")}))
    det = read_detections(str(tmp_path / "d.jsonl"), test)
    assert len(det) == 1 and _reasons(det) == ["score is not a finite number"]


def test_result_list_rejects_unknown_verb_object_and_bad_indices(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    apple = int(VOCAB.object_to_coco80[VOCAB.hoi_object[HOLD_APPLE]])
    ride = int(VOCAB.hoi_verb[RIDE_BICYCLE])
    entries = [{"file_name": "HICO_test2015_00000002.jpg",
                "predictions": [{"bbox": [1, 1, 50, 100], "category_id": 0},
                                {"bbox": [41, 61, 60, 80], "category_id": apple}],
                "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": int(VOCAB.hoi_verb[HOLD_APPLE]),
                                    "score": 0.9},
                                   {"subject_id": 0, "object_id": 1, "category_id": ride, "score": 0.8},   # ride apple
                                   {"subject_id": 0, "object_id": 5, "category_id": ride, "score": 0.7},   # no box 5
                                   {"subject_id": 0, "object_id": 1, "category_id": 500, "score": 0.7}]},  # no verb 500
               {"file_name": "elsewhere.jpg", "predictions": [{"bbox": [1, 1, 5, 5], "category_id": 0}] * 2,
                "hoi_prediction": [{"subject_id": 0, "object_id": 1, "category_id": 0, "score": 0.1}]}]
    (tmp_path / "r.json").write_text(json.dumps(entries))
    det = read_detections(str(tmp_path / "r.json"), test)
    assert len(det) == 1 and det.hoi.tolist() == [HOLD_APPLE] and det.total == 5
    assert _reasons(det) == sorted(["verb-object pair has no HICO HOI id"] * 2 + ["image is not in the test set",
                                    "subject_id / object_id (0, 5) outside the image's 2 boxes"])


def test_too_many_rejects_fail_the_run(tmp_path):
    from pipeline.cli.evaluate_results import evaluate_hicodet

    anno = small_anno(tmp_path)
    test = read_test_set(anno)
    det = small_detections(test)
    det["score"][0] = np.nan     # 1 of 7 rows: 14 % > 5 %
    write_table(det, test.file_names, tmp_path / "d.jsonl")
    with pytest.raises(DataLossError, match="1 of 7 rejected"):
        evaluate_hicodet(str(tmp_path / "d.jsonl"), anno)
    result = evaluate_hicodet(str(tmp_path / "d.jsonl"), anno, max_reject_fraction=0.2)
    assert result["metrics"]["num_rejected"] == 1 and result["rejects"][0]["item"].startswith("row 1 ")


def test_restricted_unpickler_loads_arrays_and_refuses_code():
    ok = pickle.dumps([{"bbox": np.arange(4.0), "n": np.int64(3), "t": (1, "a")}])
    assert RestrictedUnpickler(io.BytesIO(ok)).load()[0]["bbox"].tolist() == [0, 1, 2, 3]

    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("echo should-not-run",)

    with pytest.raises(pickle.UnpicklingError, match="only plain containers"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    torch_like = b"ctorch._utils\n_rebuild_tensor_v2\n."    # what a pickled tensor refers to (GLOBAL opcode)
    with pytest.raises(pickle.UnpicklingError, match="torch objects"):
        RestrictedUnpickler(io.BytesIO(torch_like)).load()


def test_mat_reader_is_not_fooled_by_an_empty_cell_pattern_inside_numbers():
    # A cell whose numbers are the bytes of an empty cell: the fast path must notice and walk cell by cell.
    cells = np.empty((2, 3), dtype=object)
    for k in range(cells.size):
        cells.flat[k] = np.zeros((0, 0))
    cells[1, 1] = np.array([[14, 48, 6, 8, 6, 0, 5, 8, 0, 0, 1, 0, 9, 0]], dtype=np.uint32)
    cells[0, 2] = np.arange(14.0).reshape(1, 14)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"all_boxes": cells})
    got = read_cell_array(buf.getvalue(), "all_boxes")
    assert got.index.tolist() == [3, 4]     # column-major: (1, 1) -> 3, (0, 2) -> 4
    assert np.array_equal(got.data, np.stack([cells[1, 1][0].astype(float), np.arange(14.0)]))


def test_anno_bbox_mat_and_instances_json_give_the_same_test_set(tmp_path):
    anno = small_anno(tmp_path)
    ann = json.loads(open(anno).read())
    entries = []
    for name, (w, h), a in zip(ann["filenames"], ann["size"], ann["annotation"]):
        box = lambda b: {"x1": b[0], "x2": b[2], "y1": b[1], "y2": b[3]}  # noqa: E731 (the .mat's field order)
        hois = [{"id": hoi + 1, "bboxhuman": [box(bh)], "bboxobject": [box(bo)], "connection": np.array([[1, 1]]),
                 "invis": 0} for hoi, bh, bo in zip(a["hoi"], a["boxes_h"], a["boxes_o"])]
        entries.append({"filename": name, "size": {"width": w, "height": h, "depth": 3},
                        "hoi": np.array(hois, dtype=object)})
    scipy.io.savemat(tmp_path / "anno_bbox.mat", {"bbox_test": np.array(entries, dtype=object)})
    from_json, from_mat = read_test_set(anno), read_test_set(str(tmp_path / "anno_bbox.mat"))
    assert from_mat.file_names == from_json.file_names
    for key in ("image_id", "hoi", "human_box", "object_box"):
        assert np.array_equal(from_mat.pairs[key], from_json.pairs[key])
    assert from_mat.rare.sum() == 138 and "official 138-class list" in from_mat.sources["rare"]
    det = small_detections(from_json)
    assert np.array_equal(scores(det, from_mat)[0].per_class, scores(det, from_json)[0].per_class, equal_nan=True)


def test_mat_cache_rejects_name_the_file_cell_and_row(tmp_path):
    test = read_test_set(small_anno(tmp_path))
    det = small_detections(test)
    det["score"][1] = np.nan                     # the second ground-truth pair's match: image 0, ride bicycle
    det["human_box"][2, 2] = det["human_box"][2, 0] - 5     # x2 < x1 (image 1, hold apple)
    write_mat_cache(det, test.num_images, tmp_path / "m")
    got = read_detections(str(tmp_path / "m"), test)
    assert len(got) == len(det["hoi"]) - 2
    bicycle = VOCAB.objects.index("bicycle") + 1
    apple = VOCAB.objects.index("apple") + 1
    ride_row = list(VOCAB.object_to_hois[bicycle - 1]).index(RIDE_BICYCLE) + 1
    hold_row = list(VOCAB.object_to_hois[apple - 1]).index(HOLD_APPLE) + 1
    assert sorted((r["item"], r["reason"]) for r in got.rejects) == sorted([
        (f"detections_{bicycle:02d}.mat all_boxes{{{ride_row},1}} row 2 (HICO_test2015_00000001.jpg)",
         "score is not a finite number"),
        (f"detections_{apple:02d}.mat all_boxes{{{hold_row},2}} row 1 (HICO_test2015_00000002.jpg)",
         "human box is malformed (not 4 finite numbers with x1 <= x2, y1 <= y2)")])

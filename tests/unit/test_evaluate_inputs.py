"""``defr evaluate`` never scores a misread file: a plain table whose HOI ids look 0-based is refused unless
the base is stated (then named in metrics.json and the report), and every empty or unreadable input is one
line naming the file, without a traceback."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.results import ReadOptions, read_detections, read_test_set
from tests.result_writers import write_table
from tests.unit.test_results_formats import small_anno, small_detections


def _zero_based(det: dict) -> dict:
    """``det`` as a table writer that numbers HOIs from 0 would write it (write_table adds 1)."""
    return {**det, "hoi": np.asarray(det["hoi"]) - 1}


def test_real_test_set_a_0_based_table_is_refused_or_read_as_stated(shared_hico, tmp_path):
    test = read_test_set(str(shared_hico / "instances_test2015.json"))
    g = test.pairs   # every ground-truth pair as a detection: the 1-based table scores them all
    det = {"image_id": g["image_id"], "hoi": g["hoi"], "human_box": g["human_box"], "object_box": g["object_box"],
           "score": np.linspace(1, 0.5, len(g["hoi"]))}
    write_table(det, test.file_names, tmp_path / "one.parquet")
    write_table(_zero_based(det), test.file_names, tmp_path / "zero.parquet")
    one = read_detections(str(tmp_path / "one.parquet"), test)
    assert not one.rejects and len(one) == len(g["hoi"])
    with pytest.raises(ValueError, match=r"zero.parquet: the HOI ids look 0-based \(\d+ row\(s\) with hoi 0, none "
                                         r"with 600\).*--hoi-base 0"):
        read_detections(str(tmp_path / "zero.parquet"), test)
    zero = read_detections(str(tmp_path / "zero.parquet"), test, options=ReadOptions(hoi_base="0"))
    assert np.array_equal(zero.hoi, one.hoi) and np.array_equal(zero.human_box, one.human_box)
    assert "HOI ids read as 0-based (0..599; hoi_base 0)" in zero.notes
    # stated 1 on the 0-based file: scored as the user said, the rows of id 0 rejected (not silently dropped)
    stated = read_detections(str(tmp_path / "zero.parquet"), test, options=ReadOptions(hoi_base="1"))
    assert {r["reason"] for r in stated.rejects} == {"HOI id is outside 1..600"}


def test_the_command_refuses_a_0_based_table_and_names_the_base_it_was_told(tmp_path, capsys):
    anno = small_anno(tmp_path)
    test = read_test_set(anno)
    det = small_detections(test)
    det["hoi"] = np.append(det["hoi"], 0)     # one more row, of HICO's first class (0-based id 0)
    for key, extra in (("image_id", 3), ("score", 0.1)):
        det[key] = np.append(det[key], extra)
    for key in ("human_box", "object_box"):
        det[key] = np.vstack([det[key], [10, 10, 50, 50]])
    write_table(det, test.file_names, tmp_path / "one.csv")
    write_table(_zero_based(det), test.file_names, tmp_path / "zero.csv")
    args = ["--benchmark", "hicodet", "--anno", anno, "--out"]
    assert main(["evaluate", str(tmp_path / "zero.csv"), *args, str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "look 0-based" in err and "--hoi-base 0" in err
    assert not (tmp_path / "a").exists()
    assert main(["evaluate", str(tmp_path / "one.csv"), *args, str(tmp_path / "one")]) == 0
    assert main(["evaluate", str(tmp_path / "zero.csv"), *args, str(tmp_path / "zero"), "--hoi-base", "0"]) == 0
    one, zero = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "zero"))
    assert zero["default"] == one["default"] and zero["known_object"] == one["known_object"]
    assert "HOI ids read as 0-based (0..599; hoi_base 0)" in zero["notes"]
    assert "HOI ids read as 0-based" in (tmp_path / "zero" / "report.md").read_text()
    assert "HOI ids read as 1-based (official, 1..600; hoi_base auto)" in one["notes"]


def _inputs(tmp_path) -> dict[str, tuple[str, str]]:
    """Unreadable inputs: {case: (results file, what the one line must say)}."""
    (tmp_path / "empty.pkl").write_bytes(b"")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")  # a picture named .json
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps([{"predictions": []}] * 3)[:-5])
    (tmp_path / "header.csv").write_text("image,hoi,human_box,object_box,score\n")
    pq.write_table(pa.table({c: pa.array([], t) for c, t in (("image", pa.string()), ("hoi", pa.int32()),
                   ("human_box", pa.string()), ("object_box", pa.string()), ("score", pa.float32()))}),
                   tmp_path / "norows.parquet")
    (tmp_path / "bad.csv").write_text("image,hoi,human_box,object_box,score\na,1,2\n")
    return {"0-byte pickle": ("empty.pkl", "the file is empty (0 bytes)"),
            "0-byte CSV": ("empty.csv", "the file is empty (0 bytes)"),
            "0-byte Parquet": ("empty.parquet", "the file is empty (0 bytes)"),
            "binary file named .json": ("binary.json", "cannot be read as detr: 'utf-8' codec"),
            "truncated pickle": ("cut.pkl", "cut.pkl: "),
            "CSV with a header only": ("header.csv", "holds no detections (table format, 0 rows)"),
            "Parquet without rows": ("norows.parquet", "holds no detections (table format, 0 rows)"),
            "CSV that does not parse": ("bad.csv", "cannot be read as table: CSV parse error")}


def test_every_empty_or_unreadable_input_is_one_line_naming_the_file(tmp_path, capsys):
    anno = small_anno(tmp_path)
    for case, (name, says) in _inputs(tmp_path).items():
        rc = main(["evaluate", str(tmp_path / name), "--benchmark", "hicodet", "--anno", anno, "--out",
                   str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2, (case, err)
        assert err.startswith(f"defr evaluate: error: {tmp_path / name}") and says in err, (case, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (case, err)
    assert not (tmp_path / "out").exists()
    # the annotations too: an empty one, and a binary one
    for name in ("empty.csv", "binary.json"):
        assert main(["evaluate", str(tmp_path / "bad.csv"), "--benchmark", "hicodet", "--anno",
                     str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"defr evaluate: error: {tmp_path / name}: ") and err.count("\n") == 1, err

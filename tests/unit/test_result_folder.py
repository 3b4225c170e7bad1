"""``defr``'s ``--out``: checked before any work (one line, exit 2, in seconds), written all at once, never a
mix of an earlier result and a new one, nothing partial on a full disk (the message names the file)."""
from __future__ import annotations

import json
import os
import time

import pytest

import pipeline.cli.commands as cli
from pipeline.cli.classify import ClassifyResult, write_classify_results
from pipeline.cli.hoi import HOIResult, write_hoi_results
from pipeline.cli.result_folder import OutputError, check_out


def _result(pictures: dict[str, bytes], note: str = "") -> HOIResult:
    hoi = {"image": "a", "uri": "a.jpg", "human_box": [0, 0, 1, 1], "object_box": [0, 0, 1, 1], "hoi": 1,
           "name": "ride horse", "verb": "ride", "object": "horse", "score": 0.5}
    return HOIResult([hoi], [], [{"image": "a", "status": "pairs"}], [], pictures, {}, [note] if note else [], {})


def _defr(capsys, *args) -> tuple[int, str, float]:
    start = time.perf_counter()
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err, time.perf_counter() - start


def _detect(out, *extra):
    # --model and the images need not exist: --out is checked before anything is read.
    return ("detect", "photos/", "--model", "no/such/model", "--boxes", "boxes.json", "--out", out, *extra)


def test_out_that_is_a_file_fails_in_seconds_with_one_line(tmp_path, capsys):
    (tmp_path / "results").write_text("mine")
    code, err, seconds = _defr(capsys, *_detect(tmp_path / "results"))
    assert code == 2 and seconds < 5
    assert err.strip() == f"defr detect: error: --out {tmp_path / 'results'} is a file, not a folder"


def test_out_in_a_read_only_folder_fails_before_any_work(tmp_path, capsys, tmpfs):
    ro = tmpfs("ro,size=100k")
    code, err, seconds = _defr(capsys, *_detect(ro / "results"))
    assert code == 2 and seconds < 5 and len(err.strip().splitlines()) == 1
    assert f"--out {ro / 'results'}: cannot write in {ro}: Read-only file system" in err
    code, err, _ = _defr(capsys, "classify", "photos/", "--model", "m", "--out", ro / "results")
    assert code == 2 and "Read-only file system" in err


def test_an_earlier_result_is_refused_unless_overwrite_and_other_files_always(tmp_path, capsys):
    out = tmp_path / "results"
    write_hoi_results(_result({"a": b"old a", "b": b"old b"}, "old"), out)
    code, err, _ = _defr(capsys, *_detect(out))
    assert code == 2 and "holds an earlier result: add --overwrite" in err
    assert check_out(out, overwrite=True) == out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    for extra in ((), ("--overwrite",)):
        code, err, _ = _defr(capsys, *_detect(mine, *extra))
        assert code == 2 and "holds other files (thesis.tex), not a defr result" in err
    assert check_out(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_a_new_result_replaces_the_earlier_one_whole(tmp_path):
    out = tmp_path / "results"
    write_hoi_results(_result({"a": b"old a", "b": b"old b"}, "old"), out)
    written = write_hoi_results(_result({"c": b"new c"}, "new"), out, overwrite=True)
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["c.png"]        # no old picture mixed in
    assert json.loads((out / "summary.json").read_text())["notes"] == ["new"]
    assert written["summary"] == str(out / "summary.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]                  # no temporary left
    write_classify_results(ClassifyResult([], [], b"sheet", [], {}), tmp_path / "cls")
    assert sorted(p.name for p in (tmp_path / "cls").iterdir()) == ["classes.json", "contact_sheet.png"]


def test_a_full_disk_leaves_no_partial_result_and_names_the_file(tmp_path, tmpfs):
    small = tmpfs("size=300k")
    out = small / "results"
    write_hoi_results(_result({"a": b"old a"}, "old"), out)
    big = os.urandom(400_000)
    with pytest.raises(OutputError) as e:
        write_hoi_results(_result({"b": b"small", "c": big}, "new"), out, overwrite=True)
    assert f"cannot write {out / 'pictures' / 'c.png'}: No space left on device (the disk is full)" in str(e.value)
    assert sorted(p.name for p in small.iterdir()) == ["results"]                     # temporary removed
    assert json.loads((out / "summary.json").read_text())["notes"] == ["old"]        # the earlier result, whole
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["a.png"]
    with pytest.raises(OutputError, match="contact_sheet.png: No space left on device"):
        write_classify_results(ClassifyResult([], [], big, [], {}), small / "cls")
    assert not (small / "cls").exists()


def test_the_writer_itself_never_replaces_a_folder_of_other_files(tmp_path):
    (tmp_path / "thesis.tex").write_text("x")
    with pytest.raises(OutputError, match="holds other files"):
        write_hoi_results(_result({"a": b"a"}), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_a_mount_point_as_out_is_refused_before_any_work(tmpfs, capsys):
    mount = tmpfs("size=100k")   # the root of a filesystem: renaming it would fail (EBUSY) after all the work
    code, err, seconds = _defr(capsys, *_detect(mount))
    assert code == 2 and seconds < 5 and len(err.strip().splitlines()) == 1
    assert f"--out {mount} is a mount point" in err and f"{mount / 'results'}" in err
    with pytest.raises(OutputError, match="is a mount point"):
        write_hoi_results(_result({"a": b"a"}), mount)


def test_a_result_that_arrives_meanwhile_is_never_replaced_without_overwrite(tmp_path):
    """Two runs into one --out: both pass the check at the start; the one that ends second must not
    replace the first one's result (the final rename itself refuses a non-empty folder)."""
    from pipeline.cli.result_folder import staged

    out = tmp_path / "results"
    check_out(out)
    with pytest.raises(OutputError, match="received another result while this run worked"):
        with staged(out) as late:
            late.file("summary.json").write_text('{"notes": ["late"]}')
            write_hoi_results(_result({"a": b"first"}, "first"), out)       # the other run ends first
    assert json.loads((out / "summary.json").read_text())["notes"] == ["first"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]       # the late run left nothing
    write_hoi_results(_result({"b": b"second"}, "second"), out, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["notes"] == ["second"]


def test_the_result_folder_has_the_umask_modes_as_stage_outputs_do(tmp_path):
    from pipeline import storage

    old = os.umask(0o022)
    try:
        write_hoi_results(_result({"a": b"a"}), tmp_path / "results")
        with storage.atomic_path(tmp_path / "stage_output") as tmp:
            tmp.mkdir()
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"results": 0o755, "stage_output": 0o755}
    assert (tmp_path / "results" / "pictures").stat().st_mode & 0o777 == 0o755

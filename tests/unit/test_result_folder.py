"""``defr``'s ``--out``: checked before any work (one line, exit 2, in seconds), written all at once, never a
mix of an earlier result and a new one, nothing partial on a full disk (the message names the file)."""
from __future__ import annotations

import json
import os
import subprocess
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


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs folder (skips where mounting is not permitted); unmounted after."""
    mounted = []

    def make(options: str):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_out_that_is_a_file_fails_in_seconds_with_one_line(tmp_path, capsys):
    (tmp_path / "results").write_text("mine")
    code, err, seconds = _defr(capsys, *_detect(tmp_path / "results"))
    assert code == 2 and seconds < 5
    assert err.strip() == f"defr detect: error: --out {tmp_path / 'results'} is a file, not a folder"


def test_out_in_a_read_only_folder_fails_before_any_work(tmp_path, capsys, mount):
    ro = mount("ro,size=100k")
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
    written = write_hoi_results(_result({"c": b"new c"}, "new"), out)
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["c.png"]        # no old picture mixed in
    assert json.loads((out / "summary.json").read_text())["notes"] == ["new"]
    assert written["summary"] == str(out / "summary.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]                  # no temporary left
    write_classify_results(ClassifyResult([], [], b"sheet", [], {}), tmp_path / "cls")
    assert sorted(p.name for p in (tmp_path / "cls").iterdir()) == ["classes.json", "contact_sheet.png"]


def test_a_full_disk_leaves_no_partial_result_and_names_the_file(tmp_path, mount):
    small = mount("size=300k")
    out = small / "results"
    write_hoi_results(_result({"a": b"old a"}, "old"), out)
    big = os.urandom(400_000)
    with pytest.raises(OutputError) as e:
        write_hoi_results(_result({"b": b"small", "c": big}, "new"), out)
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

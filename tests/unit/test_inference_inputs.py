"""defr's image arguments: files, folders, globs, fsspec URIs, lists; nothing that matches nothing is skipped."""
from __future__ import annotations

import fsspec
from PIL import Image

from pipeline.cli.inputs import expand_images


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return str(path)


def test_files_folders_globs_and_lists_in_order_each_once(tmp_path):
    a = _jpg(tmp_path / "set" / "a.jpg")
    b = _jpg(tmp_path / "set" / "b.PNG")
    (tmp_path / "set" / "notes.md").write_text("not an image")
    c = _jpg(tmp_path / "other" / "a.jpg")   # same stem as set/a.jpg
    (tmp_path / "list.txt").write_text("# my images\n\nother/a.jpg\nset/*.jpg\n")
    out = expand_images([str(tmp_path / "set"), str(tmp_path / "list.txt"), a, str(tmp_path / "gone.jpg")])
    t = out.table
    assert t["uri"].to_pylist() == [a, b, c, str(tmp_path / "gone.jpg")]   # a listed three times: once
    assert t["image_id"].to_pylist() == [0, 1, 2, 3]
    assert t["file_name"].to_pylist() == ["a.jpg", "b.PNG", "a.jpg", "gone.jpg"]
    assert t["name"].to_pylist() == ["a", "b", "a_2", "gone"]               # unique output names
    assert out.problems == []  # a missing file is kept: reading it gives the reason


def test_arguments_that_match_nothing_are_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("# nothing\n")
    out = expand_images([str(tmp_path / "*.jpg"), str(tmp_path / "empty"), str(tmp_path / "blank.txt")])
    assert out.table.num_rows == 0
    assert [why.split(" (")[0] for _, why in out.problems] == ["matches no file", "folder without image files",
                                                               "list without any line"]


def test_fsspec_uris_and_globs():
    fs = fsspec.filesystem("memory")
    fs.pipe("/defr_inputs/x/1.jpg", b"...")
    fs.pipe("/defr_inputs/x/2.jpg", b"...")
    fs.pipe("/defr_inputs/x/3.txt", b"memory://defr_inputs/x/1.jpg\n")
    out = expand_images(["memory://defr_inputs/x/*.jpg", "memory://defr_inputs/x"])
    assert out.table["uri"].to_pylist() == ["memory:///defr_inputs/x/1.jpg", "memory:///defr_inputs/x/2.jpg"]
    assert out.table["file_name"].to_pylist() == ["1.jpg", "2.jpg"]
    fs.rm("/defr_inputs", recursive=True)

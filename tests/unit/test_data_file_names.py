"""Names inside data files never reach outside their folder: an absolute path or a ``..`` escape becomes a
reject row naming the file, the row and the reason, for every dataset adapter (hico, mpii, table) and for
``defr``'s boxes files, and the outside file is never read through such a name. A symbolic link inside the
images folder is followed, not refused, even when it points outside: the dataset's owner put it there (DVC's
``cache.type symlink`` links every file into the cache; pipeline.storage.names.path_inside reads names, not
the disk)."""
from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from pipeline.datasets.adapters import prepare_dataset

W, H = 64, 48


def _jpg(path, size=(W, H)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path)
    return str(path)


@pytest.fixture
def outside(tmp_path):
    """A valid image outside the dataset root: the file an escaping name would reach."""
    return _jpg(tmp_path / "some" / "other" / "dir" / "secret.jpg")


def _escapes(root, outside) -> dict[str, str]:
    """Escaping names, by kind. Also a symbolic link the dataset's owner put inside the images folder
    (DVC's ``cache.type symlink`` does that for every file): it is followed, not an escape."""
    link = root / "images" / "link.jpg"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)
    return {"dotdot": "../../some/other/dir/secret.jpg", "absolute": outside}


def _check_rejects(out, source: str, escapes: dict[str, str], where: str) -> None:
    assert "secret.jpg" not in " ".join(out.images.column("uri").to_pylist())
    rows = {r["item"]: r for r in out.rejects.to_pylist()}
    for kind, name in escapes.items():
        row = rows[name]
        assert row["source"].endswith(source), (kind, row)
        assert where in row["reason"], (kind, row)
        expected = {"dotdot": "leads out of", "absolute": "absolute path"}[kind]
        assert expected in row["reason"], (kind, row)


def test_name_checks():
    from pipeline.storage.names import name_problem, path_inside

    assert name_problem("a/b/../c.jpg") is None and name_problem("x.jpg") is None
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", "s3://other/x.jpg", "~/x.jpg", "C:\\x.jpg", ""):
        assert name_problem(bad), bad
    assert path_inside("s3://bucket/images", "../other/x.jpg")[1]
    assert path_inside("s3://bucket/images", "sub/x.jpg") == ("s3://bucket/images/sub/x.jpg", None)


def test_hico_boxes_file_names(tmp_path, outside):
    root = tmp_path / "hico"
    folder = root / "images" / "test2015"
    good = ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"]
    for name in good:
        _jpg(folder / name)
    link = folder / "link.jpg"
    os.symlink(outside, link)
    escapes = {"dotdot": "../../../some/other/dir/secret.jpg", "absolute": outside}
    names = good + list(escapes.values()) + ["link.jpg"]
    ann = {"boxes_h": [[1, 1, 20, 40]], "boxes_o": [[10, 5, 60, 40]], "hoi": [5], "object": [1], "verb": [1]}
    (root / "instances_test2015.json").write_text(json.dumps(
        {"filenames": names, "size": [[W, H]] * len(names), "annotation": [ann] * len(names)}))
    files = {"anno": "", "hicodet_train": "", "hicodet_test": "instances_test2015.json"}
    out = prepare_dataset("hico", str(root), files, max_reject_fraction=1.0)
    assert sorted(out.images.column("file_name").to_pylist()) == sorted(good + ["link.jpg"])
    _check_rejects(out, "instances_test2015.json", escapes, "entry ")
    assert "(1 pairs dropped with it)" in out.rejects.to_pylist()[0]["reason"]


def test_mpii_labels_table_names(tmp_path, outside):
    root = tmp_path / "mpii"
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        _jpg(root / "images" / name)
    escapes = _escapes(root, outside)
    rows = ["000001.jpg,train,run", "000002.jpg,train,walk", "000003.jpg,val,run"]
    rows += [f"{name},val,walk" for name in escapes.values()] + ["link.jpg,val,walk"]
    (root / "activities.csv").write_text("image,split,activity\n" + "\n".join(rows) + "\n")
    out = prepare_dataset("mpii", str(root), {"annotations": "activities.csv", "split_lists": ""},
                          val_fraction=0.0, max_reject_fraction=1.0)
    # the link inside the folder is followed (DVC's symlink cache); the escaping names are rejects
    assert sorted(out.images.column("file_name").to_pylist()) == ["000001.jpg", "000002.jpg", "000003.jpg", "link.jpg"]
    _check_rejects(out, "activities.csv", escapes, "activities.csv row ")


def test_table_labels_names(tmp_path, outside):
    root = tmp_path / "own"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _jpg(root / "images" / name)
    escapes = _escapes(root, outside)
    (root / "classes.csv").write_text("name\nwave\nsit\n")
    rows = ["a.jpg,train,wave", "b.jpg,train,sit", "c.jpg,test,wave"] + [f"{n},test,sit" for n in escapes.values()]
    rows.append("link.jpg,test,sit")
    (root / "labels.csv").write_text("image,split,label\n" + "\n".join(rows) + "\n")
    out = prepare_dataset("table", str(root), {}, val_fraction=0.0, max_reject_fraction=1.0)
    assert sorted(out.images.column("file_name").to_pylist()) == ["a.jpg", "b.jpg", "c.jpg", "link.jpg"]
    _check_rejects(out, "labels.csv", escapes, "labels.csv row ")


def test_defr_boxes_file_keys_nan_scores_and_missing_images(tmp_path, outside):
    """defr's boxes file: escaping keys are reject rows (never matched to an image), a NaN / inf score drops
    that box only (naming the image's file), and an image that does not exist says so."""
    from pipeline.cli.hoi import boxes_rows
    from pipeline.cli.inputs import expand_images

    photos = tmp_path / "photos"
    a, b = _jpg(photos / "a.jpg"), _jpg(photos / "b.jpg")
    person = {"category": "person", "box": [1, 1, 20, 40], "score": 0.9}
    cup = {"category": "cup", "box": [10, 5, 60, 40], "score": 0.8}
    boxes = tmp_path / "boxes.json"
    # json writes NaN / Infinity, and Python's reader accepts them: a real boxes file can hold them.
    boxes.write_text(json.dumps({
        "a.jpg": [person, cup, {**cup, "score": float("nan")}, {**person, "score": float("inf")}],
        "../../some/other/dir/b.jpg": [person], outside: [person]}))
    inputs = expand_images([a, b, str(photos / "gone.jpg")])
    rows, rejects = boxes_rows(inputs, str(boxes), "auto", "coco80")
    assert rows["file_name"].to_pylist() == ["a.jpg"] and len(rows["scores"][0]) == 2
    by_item = {r["image"]: r for r in rejects}
    assert "leads out of" in by_item["../../some/other/dir/b.jpg"]["reason"]
    assert "absolute path" in by_item[outside]["reason"]
    assert by_item["../../some/other/dir/b.jpg"]["source"] == str(boxes)
    assert by_item["b.jpg"]["reason"] == "no entry for this image in the boxes file"
    nan = [r for r in rejects if r["image"].startswith("a.jpg box [")]
    assert sorted(r["reason"] for r in nan) == ["score inf is not a number in [0, 1]",
                                                "score nan is not a number in [0, 1]"]
    assert by_item[str(photos / "gone.jpg")]["reason"] == "missing image file"
    assert "gone.jpg" not in by_item


def test_defr_boxes_table_rows_with_escaping_names(tmp_path):
    from pipeline.cli.hoi import boxes_rows
    from pipeline.cli.inputs import expand_images

    a = _jpg(tmp_path / "photos" / "a.jpg")
    table = tmp_path / "boxes.csv"
    table.write_text("file_name,x1,y1,x2,y2,label,score\na.jpg,1,1,20,40,0,0.9\n../../etc/a.jpg,1,1,20,40,0,0.9\n")
    rows, rejects = boxes_rows(expand_images([a]), str(table), "auto", "coco80")
    assert rows["file_name"].to_pylist() == ["a.jpg"] and len(rows["scores"][0]) == 1
    assert rejects == [{"image": "row 1", "source": str(table),
                        "reason": "file name '../../etc/a.jpg' leads out of the image list ('..')"}]

"""The MPII adapter: the real label table and split lists (no images), the official .mat layout on a generated
file, a tiny synthetic MPII dataset through prepare, and the errors for inconsistent files."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.io

from pipeline.datasets.labels import label_matrix
from pipeline.demo.activities import generate_mpii, write_mpii_mat
from pipeline.datasets.adapters import prepare_dataset
from pipeline.datasets.files import AnnotationError
from pipeline.datasets.mpii import MpiiFiles, read_mpii, read_mpii_mat

MAT = "mpii_human_pose_v1_u12_1.mat"


def test_real_mpii_labels_and_splits_give_the_benchmark(shared_mpii):
    """8,219 train and 6,988 val images, 393 classes in train, 371 of them with a val positive, one
    activity per image (the val list is the pipeline's test split)."""
    data = read_mpii(MpiiFiles(str(shared_mpii), annotations="activities.csv", split_lists="."))
    splits = {s.split: s for s in data.splits}
    assert {k: len(s.candidates) for k, s in splits.items()} == {"train": 8219, "test": 6988}
    assert all(not s.rejects for s in data.splits)
    assert data.label_mode == "single" and data.classes.num_rows == 393
    assert all(len(c.positives) == 1 and len(c.negatives) == 392 for s in data.splits for c in s.candidates)
    train = {c.positives[0] for c in splits["train"].candidates}
    val = {c.positives[0] for c in splits["test"].candidates}
    assert len(train) == 393 and len(val) == 371 and val <= train
    names = data.classes.column("name").to_pylist()
    assert names == sorted(names) and "rock climbing" in names
    # every id of the published test list, which has no labels (PROVENANCE.md: 5,709 ids)
    test_ids = set((shared_mpii / "images_mpii_test.txt").read_text().split())
    assert data.notes["left_out_unlabelled_test_images"] == len(test_ids) == 5709
    assert splits["train"].candidates[0].uri == f"{shared_mpii}/images/{splits['train'].candidates[0].name}"


@pytest.fixture(scope="module")
def tiny_mpii(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpii") / "raw"
    generate_mpii(out, n_train=40, n_val=16, n_test=4, seed=1)
    return out


def test_generated_mat_has_the_official_nested_struct_layout(tiny_mpii):
    """RELEASE.annolist(i).image.name, RELEASE.img_train(i), RELEASE.act(i).act_name / cat_name / act_id, read
    the way MATLAB stores them (struct arrays, not cells)."""
    release = scipy.io.loadmat(tiny_mpii / MAT)["RELEASE"]
    assert release.shape == (1, 1)
    annolist, act, train = (release[0, 0][k] for k in ("annolist", "act", "img_train"))
    assert annolist.shape == (1, 60) and act.shape == (60, 1) and train.shape == (1, 60)
    first = (tiny_mpii / "images_mpii_train.txt").read_text().split()[0] + ".jpg"
    assert annolist[0, 0]["image"][0, 0]["name"][0] == first and annolist.dtype.names[0] == "image"
    assert set(act.dtype.names) == {"cat_name", "act_name", "act_id"}
    assert act[-1, 0]["act_name"].size == 0 and float(act[-1, 0]["act_id"][0, 0]) == -1   # a test image: no label
    assert int(train.sum()) == 56


def test_mat_reader_reads_names_activities_and_missing_labels(tmp_path):
    path = tmp_path / MAT
    write_mpii_mat(path, [("000000001.jpg", True, "rock climbing", "sports", 7),
                          ("000000002.jpg", True, "yoga, Hatha", "conditioning exercise", 12),
                          ("000000003.jpg", True, None, None, -1)])
    acts = read_mpii_mat(str(path))
    assert [(a.image, a.name, a.category) for a in acts] == [
        ("000000001.jpg", "rock climbing", "sports"), ("000000002.jpg", "yoga, Hatha", "conditioning exercise"),
        ("000000003.jpg", None, None)]
    scipy.io.savemat(tmp_path / "other.mat", {"annolist": np.zeros(3)})
    with pytest.raises(AnnotationError, match=r"other\.mat: missing variable 'RELEASE'"):
        read_mpii_mat(str(tmp_path / "other.mat"))


def test_mat_and_table_forms_prepare_the_same_single_label_tables(tiny_mpii):
    by_mat = prepare_dataset("mpii", str(tiny_mpii), {"annotations": MAT}, val_fraction=0.25)
    by_csv = prepare_dataset("mpii", str(tiny_mpii), {"annotations": "activities.csv"}, val_fraction=0.25)
    for name in ("images", "pairs", "classes"):
        assert getattr(by_mat, name).equals(getattr(by_csv, name)), name
    out = by_mat
    assert out.rejects.num_rows == 0 and out.pairs.num_rows == 0
    assert out.images.column("split").to_pylist().count("test") == 16
    assert out.images.column("split").to_pylist().count("val") == 10
    labels = label_matrix(out.images, out.classes.num_rows)
    assert np.all((labels == 1).sum(axis=1) == 1) and not np.isnan(labels).any()   # +1 once, -1 elsewhere
    rows = {r["image"]: r["activity"] for r in csv.DictReader(open(tiny_mpii / "activities.csv"))}
    names = out.classes.column("name").to_pylist()
    for file_name, pos in zip(out.images.column("file_name").to_pylist(), out.images.column("positives").to_pylist()):
        assert names[pos[0]] == rows[file_name]
    assert out.classes.column("coco80").null_count == out.classes.num_rows
    assert out.classes.column("rare").null_count == out.classes.num_rows
    assert out.metadata["dataset"] == "mpii" and out.metadata["label_mode"] == "single"
    assert out.metadata["left_out_unlabelled_test_images"] == 4


def test_listed_images_without_a_label_are_rejected_and_splits_must_agree(tiny_mpii, tmp_path):
    import shutil

    raw = shutil.copytree(tiny_mpii, tmp_path / "raw")
    rows = list(csv.DictReader(open(raw / "activities.csv")))
    dropped = rows.pop(0)
    with open(raw / "activities.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = prepare_dataset("mpii", str(raw), {"annotations": "activities.csv"}, max_reject_fraction=0.1)
    reject = out.rejects.to_pylist()
    assert [r["item"] for r in reject] == [dropped["image"]]
    assert reject[0]["reason"].startswith("not in the annotations (activities.csv); listed in images_mpii_")
    rows[0]["split"] = "val" if rows[0]["split"] == "train" else "train"
    with open(raw / "activities.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(AnnotationError, match=r"activities\.csv row 2: image .* has split .* but is in images_mpii_"):
        read_mpii(MpiiFiles(str(raw), annotations="activities.csv"))
    with pytest.raises(AnnotationError, match=r"the \.mat has no train/val split; set prepare\.mpii\.split_lists"):
        read_mpii(MpiiFiles(str(raw), annotations=MAT, split_lists=""))

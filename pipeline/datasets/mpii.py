"""The MPII adapter: MPII Human Pose activity labels as a single-label classification benchmark (the DEFR
paper's Table 4: 393 classes, mAP on the 6,987-image validation split).

Labels come from the official ``mpii_human_pose_v1_u12_1.mat`` (``RELEASE.annolist(i).image.name``,
``RELEASE.img_train(i)``, ``RELEASE.act(i).act_name / cat_name / act_id``) or from a labels table with
columns ``image, split, activity[, category]`` (CSV or JSON Lines; e.g. ``activities.csv``). The
benchmark split is Gkioxari's ``images_mpii_{train,val,test}.txt`` (one image id per line).

Mapping onto the pipeline's splits: the benchmark's train list is ``train`` (``prepare.val_fraction`` of
it held out as ``val`` for model selection); its val list, the one the paper reports on, becomes ``test``,
the split predict and evaluate score; its test list has no public labels and is left out (counted in the
classes table's metadata). A class is an activity name (``act_name``): one name can carry several
``act_id`` values in the ``.mat``. Classes are sorted by name. Each image has exactly one class: it is
coded +1 for that class and -1 for every other one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import scipy.io

from pipeline import storage
from pipeline.datasets.build import Candidate, DatasetInput, Reject, SplitInput, single_label_coding
from pipeline.datasets.files import AnnotationError, read_lines, read_records
from pipeline.storage.names import path_inside

log = logging.getLogger(__name__)
LIST_NAMES = {"train": "images_mpii_train.txt", "val": "images_mpii_val.txt", "test": "images_mpii_test.txt"}
# benchmark split -> pipeline split (None: no public labels, left out)
PIPELINE_SPLIT = {"train": "train", "val": "test", "test": None}


@dataclass
class MpiiFiles:
    """Where the raw files are; paths are relative to ``root`` (a local path or fsspec URI)."""
    root: str
    annotations: str = "mpii_human_pose_v1_u12_1.mat"   # the official .mat, or a labels table (.csv / .jsonl)
    split_lists: str = "."       # folder of images_mpii_{train,val,test}.txt; "" = the labels table's split column
    images: str = "images"


@dataclass
class Activity:
    image: str                   # file name, e.g. 000003072.jpg
    name: str | None             # act_name; None: the image has no activity label
    category: str | None = None  # cat_name
    split: str | None = None     # train / val / test as the labels table says (None: not given)
    where: str = ""              # file and row, for messages


def _image_name(entry: str) -> str:
    return entry if PurePosixPath(entry).suffix else f"{entry}.jpg"


def _text(value) -> str | None:
    """A MATLAB string field as str; None for an empty value ([] in the .mat)."""
    if isinstance(value, str):
        return value.strip() or None
    arr = np.asarray(value)
    if arr.size == 0:
        return None
    if arr.dtype.kind in "US":
        return str(arr.reshape(-1)[0]).strip() or None
    raise ValueError(f"expected a string, got {arr.dtype} {arr.shape}")


def _field(struct, name: str, where: str):
    try:
        return getattr(struct, name)
    except AttributeError:
        raise AnnotationError(f"{where}: missing field {name!r}") from None


def _entries(value) -> list:
    return list(np.atleast_1d(np.asarray(value, dtype=object)).reshape(-1))


def read_mpii_mat(uri: str) -> list[Activity]:
    """The activity of every image of the official ``.mat`` (train and test images alike).

    Raises:
        AnnotationError: not a MATLAB file, no ``RELEASE``, a missing field, or fields of differing lengths.
    """
    with storage.open_file(uri) as f:
        try:
            mat = scipy.io.loadmat(f, squeeze_me=True, struct_as_record=False)
        except Exception as e:  # scipy raises several unrelated types for a bad file
            raise AnnotationError(f"{uri}: not a readable MATLAB file ({e})") from e
    if "RELEASE" not in mat:
        raise AnnotationError(f"{uri}: missing variable 'RELEASE' (expected the MPII Human Pose release file)")
    release = mat["RELEASE"]
    annolist = _entries(_field(release, "annolist", f"{uri}: RELEASE"))
    acts = _entries(_field(release, "act", f"{uri}: RELEASE"))
    train = np.atleast_1d(np.asarray(_field(release, "img_train", f"{uri}: RELEASE"))).reshape(-1)
    if not len(annolist) == len(acts) == len(train):
        raise AnnotationError(f"{uri}: RELEASE.annolist ({len(annolist)}), RELEASE.act ({len(acts)}) and "
                              f"RELEASE.img_train ({len(train)}) differ in length")
    out = []
    for i, (anno, act) in enumerate(zip(annolist, acts)):
        where = f"{uri}: RELEASE.annolist({i + 1})"
        try:
            name = _text(_field(_field(anno, "image", where), "name", f"{where}.image"))
        except ValueError as e:
            raise AnnotationError(f"{where}.image.name: {e}") from e
        if name is None:
            raise AnnotationError(f"{where}.image.name is empty")
        act_where = f"{uri}: RELEASE.act({i + 1})"
        try:
            act_name = _text(_field(act, "act_name", act_where))
            cat_name = _text(_field(act, "cat_name", act_where))
        except ValueError as e:
            raise AnnotationError(f"{act_where}: {e}") from e
        out.append(Activity(name, act_name, cat_name, None, act_where))
    return out


def read_mpii_table(uri: str) -> list[Activity]:
    """A labels table ``image, split, activity[, category]`` (split optional when split lists are given)."""
    records = read_records(uri, required=("image", "activity"), optional=("split", "category"))
    out = []
    for r in records:
        split = r.get("split")
        if split is not None and split not in LIST_NAMES:
            raise AnnotationError(f"{uri} row {r['_row']}: split {split!r}; expected one of {list(LIST_NAMES)}")
        out.append(Activity(_image_name(str(r["image"])), str(r["activity"]), r.get("category"), split,
                            f"{uri} row {r['_row']}"))
    return out


def read_mpii(files: MpiiFiles) -> DatasetInput:
    """The MPII benchmark as candidates per pipeline split (see the module docstring).

    Raises:
        AnnotationError: malformed files, an image labelled twice, an activity with two categories, a
            labels table whose split disagrees with the split lists, or no way to split the images.
    """
    ann_uri = storage.join(files.root, files.annotations)
    is_mat = files.annotations.endswith(".mat")
    activities = read_mpii_mat(ann_uri) if is_mat else read_mpii_table(ann_uri)
    by_image: dict[str, Activity] = {}
    for a in activities:
        if a.image in by_image:
            raise AnnotationError(f"{a.where}: image {a.image} is listed twice (also {by_image[a.image].where})")
        by_image[a.image] = a
    if files.split_lists:
        lists = {}
        for split, fname in LIST_NAMES.items():
            uri = storage.join(files.root, files.split_lists, fname)
            if split == "test" and not storage.exists(uri):
                lists[split] = []
                continue
            lists[split] = [_image_name(x) for x in read_lines(uri)]
        for split, names in lists.items():
            for name in names:
                given = by_image.get(name)
                if given is not None and given.split is not None and given.split != split:
                    raise AnnotationError(f"{given.where}: image {name} has split {given.split!r} but is in "
                                          f"{LIST_NAMES[split]} (prepare.mpii.split_lists)")
    elif is_mat:
        raise AnnotationError(f"{ann_uri}: the .mat has no train/val split; set prepare.mpii.split_lists to the "
                              f"folder of {', '.join(LIST_NAMES.values())}")
    else:
        if any(a.split is None for a in activities):
            raise AnnotationError(f"{ann_uri}: without split lists (prepare.mpii.split_lists: '') every row "
                                  "needs a split (train, val or test)")
        lists = {s: [a.image for a in activities if a.split == s] for s in LIST_NAMES}
    listed: dict[str, str] = {}
    for split, names in lists.items():
        for name in names:
            if name in listed:
                where = storage.join(files.root, files.split_lists or files.annotations)
                raise AnnotationError(f"{where}: image {name} is listed twice ({listed[name]} and {split})")
            listed[name] = split
    in_lists = set(listed)
    unlisted = sum(1 for a in activities if a.name and a.image not in in_lists)
    labelled = [by_image[n] for s in ("train", "val") for n in lists[s] if n in by_image and by_image[n].name]
    categories: dict[str, str | None] = {}
    for a in labelled:
        if categories.setdefault(a.name, a.category) != a.category:
            raise AnnotationError(f"{a.where}: activity {a.name!r} has category {a.category!r}; elsewhere "
                                  f"{categories[a.name]!r}")
    names = sorted(categories)
    if not names:
        raise AnnotationError(f"{ann_uri}: no labelled image in the train and val split lists")
    index = {n: i for i, n in enumerate(names)}
    splits = []
    for bench, split in PIPELINE_SPLIT.items():
        if split is None:
            continue
        candidates, rejects = [], []
        for name in lists[bench]:
            a = by_image.get(name)
            if a is None or a.name is None:
                reason = "no activity label" if a else f"not in the annotations ({files.annotations})"
                rejects.append(Reject(ann_uri, name, f"{reason}; listed in {LIST_NAMES[bench]}", split))
                continue
            uri, problem = path_inside(storage.join(files.root, files.images), name)
            if problem:  # a name that leads out of the images folder is never opened
                rejects.append(Reject(ann_uri, name, f"{problem} ({a.where}; listed in {LIST_NAMES[bench]})", split))
                continue
            pos, neg = single_label_coding(index[a.name], len(names))
            candidates.append(Candidate(name, uri, None, pos, neg))
        splits.append(SplitInput(split, candidates, rejects))
    classes = pa.table({"hoi": np.arange(len(names)), "name": names,
                        "category": [categories[n] for n in names]})
    notes = {"benchmark": "MPII Human Pose activities, split of Gkioxari (images_mpii_*.txt)",
             "test_split": "the benchmark's val list (the paper reports on it)",
             "left_out_unlabelled_test_images": len(lists["test"]),
             "left_out_labelled_images_in_no_split_list": unlisted}
    if unlisted:
        log.warning("%d labelled images of %s are in no split list: left out", unlisted, ann_uri)
    return DatasetInput("mpii", splits, classes, "single", notes=notes)

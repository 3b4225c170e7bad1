"""What every dataset adapter shares: annotated images in, the pipeline's ``images`` / ``pairs`` /
``classes`` / ``rejects`` tables out.

An adapter (:mod:`pipeline.datasets.hico`, ``mpii``, ``table``) reads its raw files into a
:class:`DatasetInput`: per split the candidate images with their labels and boxes, the rows it rejected
while reading, and the static columns of its classes. :func:`assemble` then checks every image (exists,
decodes, has the annotated size), validates every box, numbers the kept images, holds out the validation
split, counts the training examples of each class, and refuses a split that lost more than the allowed
fraction of its images or pairs (:func:`pipeline.rejects.check_loss`) before anything is written.

Label coding (``images`` table): ``positives`` +1, ``negatives`` -1, ``ambiguous`` 0, every class not
listed unknown (NaN). A single-label dataset lists its one positive and every other class as negative.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from pipeline import schemas
from pipeline.datasets.images import check_images
from pipeline.rejects import check_loss

log = logging.getLogger(__name__)
from pipeline.choices import LABEL_MODES

Box = list[float]


@dataclass
class Candidate:
    """One annotated image before its file is checked.

    Attributes:
        name: the file name as the annotation gives it (``images.file_name``).
        uri: where the image file is (local path or fsspec URI).
        expected_size: (width, height) from the annotation, or None when the annotation has none.
        positives, negatives, ambiguous: class ids with label +1, -1, 0 (the rest: unknown).
        pairs: (class id, human box, object box) ground-truth pairs, boxes [x1, y1, x2, y2] continuous pixels.
        pairs_source: the file the pairs came from (named in the rejects of bad boxes).
    """

    name: str
    uri: str
    expected_size: tuple[int, int] | None
    positives: list[int]
    negatives: list[int] = field(default_factory=list)
    ambiguous: list[int] = field(default_factory=list)
    pairs: list[tuple[int, Box, Box]] = field(default_factory=list)
    pairs_source: str = ""


@dataclass
class Reject:
    """A row left out, with the reason; ``kind`` "image" or "pair" says what the split lost."""

    source: str
    item: str
    reason: str
    split: str
    kind: str = "image"


@dataclass
class SplitInput:
    split: str                                   # train | val | test
    candidates: list[Candidate]
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class DatasetInput:
    """An adapter's reading of a raw dataset.

    Attributes:
        dataset: the adapter's name (hico | mpii | table), written into classes.parquet's metadata.
        splits: in the order their images get ids.
        classes: the static class columns (``hoi`` 0..C-1 and any of name, verb, verb_ing, object, verb_idx,
            object_idx, coco80, category, prompt, subsets); counts and ``rare`` are added here.
        label_mode: ``multi`` (any number of positives per image) or ``single`` (exactly one).
        rare: (training pairs per class, whether the dataset has training pairs) -> [C] bool rare flags,
            or None where the dataset defines no rare split.
        notes: facts for the classes table's metadata (e.g. which benchmark split became ``test``).
    """

    dataset: str
    splits: list[SplitInput]
    classes: pa.Table
    label_mode: str = "multi"
    rare: Callable[[np.ndarray, bool], np.ndarray | None] = lambda n_pairs, has_pairs: None
    notes: dict = field(default_factory=dict)


@dataclass
class Prepared:
    images: pa.Table
    pairs: pa.Table
    classes: pa.Table
    rejects: pa.Table
    metadata: dict                               # for classes.parquet: dataset, label_mode, notes
    summary: list[str] = field(default_factory=list)   # one line per split that lost rows


def box_problem(box: Box, width: int, height: int) -> str | None:
    """Why a box cannot be used in a ``width`` x ``height`` image, or None."""
    x1, y1, x2, y2 = box
    if not np.all(np.isfinite(box)):
        return "non-finite box"
    if x2 <= x1 or y2 <= y1:
        return f"inverted or empty box {box}"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"box {box} lies outside the {width}x{height} image"
    return None


def assemble(data: DatasetInput, val_fraction: float = 0.1, seed: int = 0, decode_images: bool = True,
             workers: int = 8, max_reject_fraction: float = 1.0, rejects_path: str = "") -> Prepared:
    """Checks the images and boxes of ``data`` and builds the four tables (see the module docstring).

    Args:
        val_fraction: share of the train split held out as ``val`` (seeded); not applied when the dataset
            gives a ``val`` split of its own.
        decode_images: read every pixel (catches truncated files), not only the header.
        max_reject_fraction: a split that loses more than this fraction of its images (or pairs) fails.
        rejects_path: where the rejects table will be written (named in the messages).

    Raises:
        DataLossError: a split lost more than ``max_reject_fraction`` of its images or pairs, or all.
        ValueError: an unknown label mode, a class id out of range.
    """
    if data.label_mode not in LABEL_MODES:
        raise ValueError(f"label mode {data.label_mode!r}: expected one of {LABEL_MODES}")
    num_classes = data.classes.num_rows
    rows: dict[str, list] = {k: [] for k in schemas.IMAGES.names}
    pair_rows: dict[str, list] = {k: [] for k in schemas.PAIRS.names}
    rejects: list[Reject] = []
    totals: dict[tuple[str, str], int] = {}
    next_id = 0
    for part in data.splits:
        rejects += part.rejects
        totals[(part.split, "image")] = totals.get((part.split, "image"), 0) + len(part.candidates) + sum(
            r.kind == "image" for r in part.rejects)
        checks = check_images([c.uri for c in part.candidates], [c.expected_size for c in part.candidates],
                              decode_images, workers, desc=f"checking {part.split} images")
        for cand, chk in zip(part.candidates, checks):
            for ids in (cand.positives, cand.negatives, cand.ambiguous, [p[0] for p in cand.pairs]):
                bad = [c for c in ids if not 0 <= c < num_classes]
                if bad:
                    raise ValueError(f"{cand.uri}: class id {bad[0]} outside [0, {num_classes})")
            if chk.problem:
                n = len(cand.pairs)
                rejects.append(Reject(cand.uri, cand.name, chk.problem + (f" ({n} pairs dropped with it)" if n else ""),
                                      part.split))
                continue
            image_id = next_id
            next_id += 1
            values = (image_id, part.split, cand.name, cand.uri, chk.width, chk.height, cand.positives,
                      cand.negatives, cand.ambiguous)
            for k, v in zip(schemas.IMAGES.names, values):
                rows[k].append(v)
            totals[(part.split, "pair")] = totals.get((part.split, "pair"), 0) + len(cand.pairs)
            for h, hb, ob in cand.pairs:
                problem = box_problem(hb, chk.width, chk.height) or box_problem(ob, chk.width, chk.height)
                if problem:
                    rejects.append(Reject(cand.pairs_source, f"{cand.name} hoi {h}", problem, part.split, "pair"))
                    continue
                for k, v in zip(schemas.PAIRS.names, (image_id, h, hb, ob)):
                    pair_rows[k].append(v)
    summary = _check_losses(totals, rejects, max_reject_fraction, rejects_path)
    images = schemas.conform(pa.table(rows), schemas.IMAGES, "images")
    if "val" not in {p.split for p in data.splits}:
        images = hold_out_val(images, val_fraction, seed)
    pairs = schemas.conform(pa.table(pair_rows), schemas.PAIRS, "pairs")
    classes = class_table(data, images, pairs)
    rejects_t = (pa.table({"source": [r.source for r in rejects], "item": [r.item for r in rejects],
                           "reason": [r.reason for r in rejects]}) if rejects else schemas.REJECTS.empty_table())
    meta = {"dataset": data.dataset, "label_mode": data.label_mode, **data.notes}
    return Prepared(images, pairs, classes, schemas.conform(rejects_t, schemas.REJECTS, "rejects"), meta, summary)


def _check_losses(totals: dict, rejects: list[Reject], max_fraction: float, rejects_path: str) -> list[str]:
    """check_loss per (split, kind); the summary lines of the splits that lost something."""
    lines = []
    for (split, kind), total in totals.items():
        reasons = [r.reason for r in rejects if r.split == split and r.kind == kind]
        line = check_loss(f"{split} split {kind}s", total, reasons, max_fraction, rejects_path)
        if line:
            lines.append(line)
    return lines


def hold_out_val(images: pa.Table, fraction: float, seed: int) -> pa.Table:
    """Marks a seeded random ``fraction`` of the train images as ``val``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"prepare.val_fraction must be in [0, 1), got {fraction}")
    split = np.asarray(images.column("split").to_pylist(), dtype=object)
    train = np.flatnonzero(split == "train")
    n_val = int(round(fraction * len(train)))
    val = np.random.default_rng(seed).choice(train, size=n_val, replace=False)
    split[val] = "val"
    return images.set_column(images.schema.get_field_index("split"), "split", pa.array(split, pa.string()))


def class_table(data: DatasetInput, images: pa.Table, pairs: pa.Table) -> pa.Table:
    """The adapter's class columns plus ``n_train_images`` (positive train + val images),
    ``n_train_pairs`` (train + val pairs) and ``rare`` (the adapter's rule; null where it has none)."""
    static = data.classes
    C = static.num_rows
    hoi = np.asarray(static.column("hoi").to_numpy(), dtype=np.int64)
    if not np.array_equal(hoi, np.arange(C)):
        raise ValueError(f"{data.dataset} classes: hoi must be 0..{C - 1} in order")
    n_images, n_pairs = training_counts(images, pairs, C)
    rare = data.rare(n_pairs, bool(n_pairs.any()))
    cols = {name: static.column(name) for name in static.column_names}
    cols.update(n_train_images=n_images, n_train_pairs=n_pairs,
                rare=pa.nulls(C, pa.bool_()) if rare is None else pa.array(np.asarray(rare, dtype=bool)))
    for f in schemas.CLASSES:
        if f.name not in cols:
            cols[f.name] = pa.nulls(C, f.type)
    return schemas.conform(pa.table(cols), schemas.CLASSES, "classes")


def training_counts(images: pa.Table, pairs: pa.Table, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """([C] positive train + val images, [C] train + val pairs) of each class."""
    trainval = np.isin(np.asarray(images.column("split").to_pylist()), ["train", "val"])
    n_images = np.zeros(num_classes, dtype=np.int64)
    for lst, tv in zip(images.column("positives").to_pylist(), trainval):
        if tv:
            n_images[lst] += 1
    in_train = np.isin(pairs.column("image_id").to_numpy(), images.column("image_id").to_numpy()[trainval])
    n_pairs = np.bincount(pairs.column("hoi").to_numpy()[in_train].astype(np.int64), minlength=num_classes)
    return n_images, n_pairs


def single_label_coding(positive: int, num_classes: int) -> tuple[list[int], list[int]]:
    """(positives, negatives) of an image of a single-label dataset: its class +1, every other -1."""
    return [positive], [c for c in range(num_classes) if c != positive]

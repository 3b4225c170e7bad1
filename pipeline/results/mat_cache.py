"""The official Matlab evaluation's own input: ``detections_NN.mat`` files with ``all_boxes``.

What ho-rcnn's ``evaluation/eval_one.m`` reads (``format = 'obj'``) and what UPT / PViC / CGC-HOI write
with ``--cache`` (``CustomisedDLE.cache_hico`` in fredzzhang/upt ``utils.py``):

* one file per object, ``detections_01.mat`` .. ``detections_80.mat``, each with a cell array
  ``all_boxes`` of [HOIs of the object, test images]: row ``r`` is the object's r-th HOI in HICO's id order
  (the object's HOIs are a contiguous block of the 600), column ``j`` the j-th test image of the annotation
  (all 9,658, images without ground truth included);
* each cell an [n, 9] matrix: human x1 y1 x2 y2, object x1 y1 x2 y2, score; empty where nothing was found;
* boxes as 0-based pixel indices: ``eval_one.m`` adds 1 to every coordinate before the 1-pixel-inclusive
  IoU (UPT subtracts 1 from x2 and y2 of its continuous boxes to get there). Here the official box
  ``b + 1`` becomes the pipeline's continuous ``[x1, y1, x2 + 1, y2 + 1]``, which gives the same IoUs.
* ``NN``: ho-rcnn numbers the files in COCO order (``get_list_coco_obj.m``: person = 01), UPT's cache in
  HICO's alphabetical object order (airplane = 01). The row count of each file (the object's number of
  HOIs) tells which: ``object_order="auto"`` picks the order every file agrees with and refuses an
  ambiguous set (pass ``"coco"`` or ``"hico"``).

A single ``detections.mat`` with a [600, images] ``all_boxes`` (``format = 'all'``) is read too.

Precision: a cache written as single (UPT's float32) makes Matlab compute the IoU in single precision;
here it is computed in double from the same stored values, so a detection whose overlap lies within
float32 rounding of 0.5 could be decided differently (none did in our tests).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary
from pipeline.results.mat_cells import Cells, FormatNotHandled, read_cell_array
from pipeline.results.records import Detections, check_rows
from pipeline.results.testset import HicoDetTestSet

log = logging.getLogger(__name__)
FILE_RE = re.compile(r"detections_(\d\d)\.mat$")
from pipeline.choices import MAT_OBJECT_ORDERS as OBJECT_ORDERS


def cache_files(folder: str) -> dict[int, str]:
    """{NN: path} of the ``detections_NN.mat`` files in ``folder`` (or the single file given)."""
    if folder.endswith(".mat"):
        m = FILE_RE.search(folder)
        return {int(m.group(1)) if m else 0: folder}
    files = {}
    for path in _glob(folder, "detections_*.mat"):
        m = FILE_RE.search(path)
        if m:
            files[int(m.group(1))] = path
    return files


def _glob(folder: str, pattern: str) -> list[str]:
    if storage.is_local(folder):
        return sorted(str(p) for p in Path(storage.local_path(folder)).glob(pattern))
    fs, path = storage.filesystem(folder)
    scheme = storage.protocol(folder)
    return sorted(f"{scheme}://{p}" for p in fs.glob(path.rstrip("/") + "/" + pattern))


def read_mat_cache(path: str, test: HicoDetTestSet, object_order: str = "auto",
                   vocab: Vocabulary | None = None) -> Detections:
    """Reads a folder of ``detections_NN.mat`` (or one such file, or ``detections.mat``) into detections.

    Raises:
        ValueError: no file, an unreadable file, a file whose ``all_boxes`` shape fits no object, or an
            object order that cannot be told from the files.
    """
    vocab = vocab or hico_vocabulary()
    if object_order not in OBJECT_ORDERS:
        raise ValueError(f"object_order {object_order!r}: expected one of {OBJECT_ORDERS}")
    files = cache_files(path)
    if not files:
        raise ValueError(f"{path}: no detections_NN.mat file (the Matlab evaluation's input, e.g. UPT's --cache)")
    arrays = {nn: _read_all_boxes(p) for nn, p in sorted(files.items())}
    n_images = test.num_images
    for nn, cells in arrays.items():
        if cells.shape[1] != n_images:
            raise ValueError(f"{files[nn]}: all_boxes has {cells.shape[1]} columns; the test set has {n_images} images "
                             "(one column per test image, in the annotation's order, empty ones included)")
        if cells.data.shape[1] < 9 and len(cells.index):
            raise ValueError(f"{files[nn]}: all_boxes cells have {cells.data.shape[1]} columns, expected 9 "
                             "(human x1 y1 x2 y2, object x1 y1 x2 y2, score)")
    if set(arrays) == {0}:
        order, hoi_rows = "all", {0: np.arange(len(vocab))}
        if arrays[0].shape[0] != len(vocab):
            raise ValueError(f"{files[0]}: all_boxes has {arrays[0].shape[0]} rows, expected {len(vocab)} HOIs")
    else:
        order = _object_order({nn: c.shape[0] for nn, c in arrays.items()}, object_order, vocab, path)
        hoi_rows = {nn: vocab.object_to_hois[_file_object(nn, order, vocab)] for nn in arrays}
    hoi, image, data, origin = [], [], [], []
    for nn, cells in arrays.items():
        rows = cells.shape[0]
        hoi.append(np.repeat(np.asarray(hoi_rows[nn], np.int64)[cells.index % rows], cells.count))
        image.append(np.repeat(cells.index // rows, cells.count))
        data.append(cells.data[:, :9].reshape(-1, 9))
        origin.append(np.full(int(cells.count.sum()), nn))
    hoi, image, origin = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (hoi, image, origin))
    data = np.concatenate(data) if data else np.zeros((0, 9))
    k = len(hoi)
    # 0-based pixel indices -> official (+1) -> continuous [x1 - 1, y1 - 1, x2, y2]: x1, y1 as stored, x2, y2 + 1.
    boxes = data[:, :8].copy()
    boxes[:, [2, 3, 6, 7]] += 1.0

    def describe(bad: np.ndarray) -> list[str]:
        out = []
        for b in bad.tolist():
            nn = int(origin[b])
            first = int(np.flatnonzero(origin == nn)[0])
            cells = arrays[nn]
            within = b - first
            c = int(np.searchsorted(np.cumsum(cells.count), within, side="right"))
            row_in_cell = within - int(np.cumsum(cells.count)[c] - cells.count[c])
            r, j = int(cells.index[c] % cells.shape[0]), int(cells.index[c] // cells.shape[0])
            out.append(f"{files[nn].rsplit('/', 1)[-1]} all_boxes{{{r + 1},{j + 1}}} row {row_in_cell + 1} "
                       f"({test.file_names[j]})")
        return out

    det = check_rows(path, image, hoi, boxes[:, :4], boxes[:, 4:], data[:, 8], describe, "mat")
    told = " (told from the row counts)" if object_order == "auto" and order != "all" else ""
    det.notes.append(f"{len(files)} file(s), object order {order}{told}")
    log.info("read %d detections from %d .mat file(s) in %s", k, len(files), path)
    return det


def _read_all_boxes(path: str) -> Cells:
    with storage.open_file(path, "rb") as f:
        data = f.read()
    try:
        return read_cell_array(data, "all_boxes")
    except KeyError:
        raise ValueError(f"{path}: no variable 'all_boxes' (expected the Matlab evaluation's detections "
                         "file)") from None
    except FormatNotHandled as why:
        log.info("%s: %s; reading it with scipy.io.loadmat (slower)", path, why)
        return _scipy_all_boxes(path, data)
    except ValueError as e:
        raise ValueError(f"{path}: all_boxes {e}") from None


def _scipy_all_boxes(path: str, data: bytes) -> Cells:
    import io

    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(data), variable_names=["all_boxes"])
    except (NotImplementedError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a MATLAB v5 file scipy can read ({e}); a v7.3 file must be saved with "
                         "-v7 first") from e
    if "all_boxes" not in mat:
        raise ValueError(f"{path}: no variable 'all_boxes'")
    cells = np.asarray(mat["all_boxes"], dtype=object)
    if cells.ndim != 2:
        raise ValueError(f"{path}: all_boxes has shape {cells.shape}, expected [HOIs, images]")
    out = []
    for k, cell in enumerate(cells.reshape(-1, order="F")):
        arr = np.asarray(cell, dtype=np.float64)
        if arr.size:
            out.append((k, arr.reshape(arr.shape[0], -1)))
    try:
        return Cells.from_list(cells.shape, out)
    except ValueError as e:
        raise ValueError(f"{path}: all_boxes {e}") from None


def _file_object(nn: int, order: str, vocab: Vocabulary) -> int:
    return int(vocab.coco80_to_object[nn - 1]) if order == "coco" else nn - 1


def _object_order(rows: dict[int, int], wanted: str, vocab: Vocabulary, path: str) -> str:
    """The object numbering of the files ("coco" or "hico") that fits every file's row count."""
    bad = [nn for nn in rows if not 1 <= nn <= 80]
    if bad:
        raise ValueError(f"{path}: detections_{bad[0]:02d}.mat: file numbers run from 01 to 80 (one per object)")
    fits = {o: all(rows[nn] == len(vocab.object_to_hois[_file_object(nn, o, vocab)]) for nn in rows)
            for o in ("coco", "hico")}
    if wanted != "auto":
        if not fits[wanted]:
            nn = next(n for n in rows if rows[n] != len(vocab.object_to_hois[_file_object(n, wanted, vocab)]))
            o = _file_object(nn, wanted, vocab)
            raise ValueError(f"{path}: detections_{nn:02d}.mat has {rows[nn]} rows but object {nn} in {wanted} order "
                             f"({vocab.objects[o]}) has {len(vocab.object_to_hois[o])} HOIs")
        return wanted
    if fits["coco"] and fits["hico"]:
        raise ValueError(f"{path}: the row counts of these {len(rows)} file(s) fit both COCO (ho-rcnn) and HICO "
                         "(UPT) object numbering; say which (--mat-object-order coco|hico)")
    if not (fits["coco"] or fits["hico"]):
        raise ValueError(f"{path}: the row counts of all_boxes fit neither COCO (ho-rcnn) nor HICO alphabetical (UPT) "
                         "object numbering of detections_NN.mat; each file needs one row per HOI of its object")
    return "coco" if fits["coco"] else "hico"

"""Writers of detections in each format ``defr evaluate`` reads: how the tests and
``bench/bench_evaluate_external.py`` write the same detections in every format (test and bench code, not
part of the library).

Boxes go in as the pipeline's continuous [x1, y1, x2, y2] and come out in each format's own convention
(table and result lists: 1-based annotation boxes; ``.mat``: 0-based pixel indices), exactly inverse to the
readers, so a box with whole or binary-fraction coordinates survives every round trip bit for bit.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary

_EMPTY_CELL = struct.pack("<14I", 14, 48, 6, 8, 6, 0, 5, 8, 0, 0, 1, 0, 9, 0)


def write_table(det: dict, file_names: list[str], path: str | Path) -> None:
    """A plain table (.csv, .jsonl or .parquet): image, hoi (1-based), 1-based boxes, score."""
    import pyarrow as pa

    path = str(path)
    h, o = _official(det["human_box"]), _official(det["object_box"])
    names = [file_names[i] for i in np.asarray(det["image_id"]).tolist()]
    hoi = (np.asarray(det["hoi"]) + 1).tolist()
    score = np.asarray(det["score"], dtype=np.float64)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        image = pa.DictionaryArray.from_arrays(pa.array(np.asarray(det["image_id"], np.int32)), pa.array(file_names))
        pq.write_table(pa.table({"image": image, "hoi": pa.array(hoi, pa.int32()),
                                 "human_box": pa.FixedSizeListArray.from_arrays(pa.array(h.ravel()), 4),
                                 "object_box": pa.FixedSizeListArray.from_arrays(pa.array(o.ravel()), 4),
                                 "score": score}), path)
    elif path.endswith(".jsonl"):
        with open(path, "w") as f:
            for r in range(len(names)):
                f.write(json.dumps({"image": names[r], "hoi": hoi[r], "human_box": h[r].tolist(),
                                    "object_box": o[r].tolist(), "score": float(score[r])}) + "\n")
    elif path.endswith(".csv"):
        with open(path, "w") as f:
            f.write("image,hoi,human_box,object_box,score\n")
            for r in range(len(names)):
                f.write(f'{names[r]},{hoi[r]},"{_list(h[r])}","{_list(o[r])}",{float(score[r])!r}\n')
    else:
        raise ValueError(f"{path}: expected .csv, .jsonl or .parquet")


def write_detr_list(det: dict, file_names: list[str], path: str | Path, hoi_labels: str = "verb",
                    vocab: Vocabulary | None = None, with_names: bool = True) -> None:
    """A QPIC-style (``hoi_labels="verb"``, COCO-80 object labels) or GEN-VLKT-style (``"hoi"``) JSON list, one
    entry per test image, each detection with its own human and object box."""
    vocab = vocab or hico_vocabulary()
    obj_to_coco = vocab.object_to_coco80
    entries = [{"file_name": n, "predictions": [], "hoi_prediction": []} if with_names else
               {"predictions": [], "hoi_prediction": []} for n in file_names]
    h, o = _official(det["human_box"]), _official(det["object_box"])
    for r, (i, c, s) in enumerate(zip(np.asarray(det["image_id"]).tolist(), np.asarray(det["hoi"]).tolist(),
                                      np.asarray(det["score"], dtype=np.float64).tolist())):
        e = entries[i]
        k = len(e["predictions"])
        obj = int(vocab.hoi_object[c])
        human, thing = {"bbox": h[r].tolist()}, {"bbox": o[r].tolist()}
        if hoi_labels == "verb":
            human["category_id"], thing["category_id"] = 0, int(obj_to_coco[obj])
        e["predictions"] += [human, thing]
        e["hoi_prediction"].append({"subject_id": k, "object_id": k + 1, "score": s,
                                    "category_id": int(vocab.hoi_verb[c]) if hoi_labels == "verb" else c})
    Path(path).write_text(json.dumps(entries))


def write_mat_cache(det: dict, num_images: int, folder: str | Path, object_order: str = "hico",
                    vocab: Vocabulary | None = None, dtype=np.float64) -> None:
    """``detections_NN.mat`` files as UPT's ``--cache`` writes them (``object_order="hico"``) or as ho-rcnn
    numbers them (``"coco"``): per object, a [HOIs of the object, images] cell array of [n, 9] matrices with
    0-based pixel-index boxes. Written directly in MAT v5 (scipy's writer takes minutes for 5.8M cells)."""
    vocab = vocab or hico_vocabulary()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mat = np.concatenate([_zero_based(det["human_box"]), _zero_based(det["object_box"]),
                          np.asarray(det["score"], dtype=np.float64)[:, None]], axis=1).astype(dtype)
    hoi, image = np.asarray(det["hoi"]), np.asarray(det["image_id"])
    order = np.lexsort((np.arange(len(hoi)), image, hoi))
    for nn in range(1, 81):
        obj = int(vocab.coco80_to_object[nn - 1]) if object_order == "coco" else nn - 1
        hois = vocab.object_to_hois[obj]
        rows = {int(h): r for r, h in enumerate(hois)}
        sel = order[np.isin(hoi[order], hois)]
        cells: dict[int, np.ndarray] = {}
        if len(sel):
            key = np.array([image[s] * len(hois) + rows[int(hoi[s])] for s in sel])   # column-major cell index
            bounds = np.flatnonzero(np.diff(key)) + 1
            for chunk in np.split(np.arange(len(sel)), bounds):
                cells[int(key[chunk[0]])] = mat[sel[chunk]]
        (folder / f"detections_{nn:02d}.mat").write_bytes(_mat_bytes(len(hois), num_images, cells))


def _mat_bytes(rows: int, cols: int, cells: dict[int, np.ndarray]) -> bytes:
    parts, last = [], 0
    for k in sorted(cells):
        parts.append(_EMPTY_CELL * (k - last))
        parts.append(_cell_bytes(cells[k]))
        last = k + 1
    parts.append(_EMPTY_CELL * (rows * cols - last))
    body = b"".join(parts)
    name = b"all_boxes"
    head = struct.pack("<4I", 6, 8, 1, 0) + struct.pack("<4I", 5, 8, rows, cols) + struct.pack("<2I", 1, len(name)) \
        + name + b"\0" * (-len(name) % 8)
    var = struct.pack("<2I", 14, len(head) + len(body)) + head + body
    header = (b"MATLAB 5.0 MAT-file, written by defr-pipeline".ljust(116, b" ") + b"\0" * 8
              + struct.pack("<H", 0x0100) + b"IM")
    return header + var


def _cell_bytes(m: np.ndarray) -> bytes:
    mi, cls = (7, 7) if m.dtype == np.float32 else (9, 6)
    data = np.ascontiguousarray(m.T).tobytes()
    inner = (struct.pack("<4I", 6, 8, cls, 0) + struct.pack("<4I", 5, 8, m.shape[0], m.shape[1])
             + struct.pack("<2I", 1, 0) + struct.pack("<2I", mi, len(data)) + data + b"\0" * (-len(data) % 8))
    return struct.pack("<2I", 14, len(inner)) + inner


def _official(box) -> np.ndarray:
    out = np.asarray(box, dtype=np.float64).copy()
    out[:, :2] += 1.0
    return out


def _zero_based(box) -> np.ndarray:
    out = np.asarray(box, dtype=np.float64).copy()
    out[:, 2:] -= 1.0
    return out


def _list(v: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(x)) for x in v) + "]"

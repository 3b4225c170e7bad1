"""Which format a result file is in, and the reader for it.

* ``mat``: ``detections_NN.mat`` (the Matlab evaluation's input; UPT / PViC ``--cache``): a folder holding
  them, or a ``.mat`` file.
* ``detr``: QPIC / CDN / GEN-VLKT / HOICLIP result lists: ``.json`` / ``.pkl``.
* ``table``: plain table (image, hoi 1..600, human_box, object_box, score): ``.csv``, ``.jsonl``, or
  ``.parquet`` with an ``image`` column.
* ``pipeline``: this project's ``hoi_detections.parquet``: ``.parquet`` with ``image_id`` and no ``image``.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline import storage
from pipeline.results.records import Detections, named_read_errors
from pipeline.results.testset import HicoDetTestSet

from pipeline.choices import RESULT_FORMATS as FORMATS


@dataclass
class ReadOptions:
    """Format-specific options (the ``defr evaluate`` flags of the same names)."""

    images: str = ""                # pipeline format: the prepared images.parquet
    mat_object_order: str = "auto"  # mat: coco (ho-rcnn) | hico (UPT) | auto
    hoi_labels: str = "auto"        # detr: verb | hoi | auto
    object_labels: str = "coco80"   # detr, verb labels: coco80 | coco91 | hico80
    hoi_base: str = "auto"          # table: 1 (official ids) | 0 | auto (refuses ids that look 0-based)


def detect_format(path: str) -> str:
    """The format of ``path`` (see the module table).

    Raises:
        ValueError: nothing recognisable, naming what was expected.
    """
    from pipeline.results.mat_cache import cache_files

    lower = path.lower().rstrip("/")
    if lower.endswith(".mat"):
        return "mat"
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_file(path, "rb") as f:
            names = pq.read_schema(f).names
        return "table" if "image" in names else "pipeline" if "image_id" in names else _unknown(path, names)
    if lower.endswith((".csv", ".jsonl", ".ndjson")):
        return "table"
    if lower.endswith((".json", ".pkl", ".pickle")):
        return "detr"
    if storage.exists(path) and cache_files(path):
        return "mat"
    raise ValueError(f"{path}: cannot tell the format: expected a folder of detections_NN.mat, a .json / .pkl result "
                     "list, a .csv / .jsonl / .parquet table (or pass --format)")


def _unknown(path: str, names: list[str]) -> str:
    raise ValueError(f"{path}: a Parquet file with columns {names}; a plain table needs 'image', the pipeline's "
                     "hoi_detections.parquet 'image_id'")


def read_detections(path: str, test: HicoDetTestSet, fmt: str = "auto",
                    options: ReadOptions | None = None) -> Detections:
    """Reads ``path`` in format ``fmt`` (``auto``: :func:`detect_format`) against the test set.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown format, or what the reader raises for a malformed file.
    """
    options = options or ReadOptions()
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {FORMATS}")
    if not storage.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    with named_read_errors(path, "any known format"):
        fmt = detect_format(path) if fmt == "auto" else fmt
    with named_read_errors(path, fmt):
        det = _read(path, test, fmt, options)
    if not det.total:
        raise ValueError(f"{path}: holds no detections ({fmt} format, 0 rows): no results to score")
    return det


def _read(path: str, test: HicoDetTestSet, fmt: str, options: ReadOptions) -> Detections:
    if fmt == "mat":
        from pipeline.results.mat_cache import read_mat_cache

        return read_mat_cache(path, test, options.mat_object_order)
    if fmt == "detr":
        from pipeline.results.detr_lists import read_detr_list

        return read_detr_list(path, test, options.hoi_labels, options.object_labels)
    if fmt == "table":
        from pipeline.results.own_tables import read_plain_table

        return read_plain_table(path, test, hoi_base=options.hoi_base)
    from pipeline.results.own_tables import read_own_parquet

    return read_own_parquet(path, test, options.images)

"""Another model's HICO-DET results as the evaluate stage's ``hoi_detections`` table (``evaluate.external``).

The test set is the prepared dataset's own test split (``images.parquet`` sorted by image_id: for HICO-DET
the annotation's order, so the columns of a ``detections_NN.mat`` cache line up), its test pairs and the
rare and object columns of ``classes.parquet``; Known Object takes the images' positive labels, as the
stage does for the pipeline's own detections. The result is a table in the prepared image ids, which the
stage scores exactly as it scores ``data/hoi_detections.parquet``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.classes.space import ClassSpace
from pipeline.datasets.labels import label_matrix
from pipeline.datasets.splits import test_pairs, test_split
from pipeline.results.formats import ReadOptions, read_detections
from pipeline.results.records import Detections
from pipeline.results.testset import HicoDetTestSet


def prepared_test_set(prepared: str) -> tuple[HicoDetTestSet, np.ndarray]:
    """(the test set of a prepared HICO dataset, the prepared image_id of each test index).

    Raises:
        ValueError: a dataset that is not HICO's 600 classes (other formats speak HICO's ids).
    """
    path = storage.join(prepared, "classes.parquet")
    space = ClassSpace.from_table(storage.read_parquet(path), path)
    if len(space) != 600 or space.dataset != "hico":
        raise ValueError(f"evaluate.external: the prepared dataset is {space.dataset} with {len(space)} classes; "
                         "external HICO-DET results need prepare.dataset: hico (600 classes)")
    images = storage.read_parquet(storage.join(prepared, "images.parquet"))
    test = test_split(images)
    ids = np.asarray(test.column("image_id").to_numpy())
    pairs = test_pairs(images, storage.read_parquet(storage.join(prepared, "pairs.parquet")))
    pos = np.searchsorted(ids, np.asarray(pairs.column("image_id").to_numpy()))
    box = lambda c: np.asarray(pairs.column(c).combine_chunks().flatten().to_numpy(), np.float64).reshape(-1, 4)  # noqa
    gt = {"image_id": pos, "hoi": np.asarray(pairs.column("hoi").to_numpy(), np.int64), "human_box": box("human_box"),
          "object_box": box("object_box")}
    rows, hois = np.nonzero(label_matrix(test, len(space)) == 1)
    rare = space.rare if space.rare is not None else np.zeros(len(space), bool)
    object_images = (rows.astype(np.int64), space.object_index[hois])
    return HicoDetTestSet(test.column("file_name").to_pylist(), gt, rare, object_images,
                          {"annotation": f"{prepared} (test split)"}), ids


def external_hoi_detections(results: str, prepared: str, fmt: str = "auto",
                            options: ReadOptions | None = None) -> tuple[pa.Table, Detections]:
    """(HOI_DETECTIONS-like table in prepared image ids with float64 boxes, the checked detections)."""
    test, ids = prepared_test_set(prepared)
    det = read_detections(results, test, fmt, options)
    table = pa.table({"image_id": ids[det.image_id], "hoi": det.hoi.astype(np.int16),
                      "human_box": pa.FixedSizeListArray.from_arrays(pa.array(det.human_box.ravel()), 4),
                      "object_box": pa.FixedSizeListArray.from_arrays(pa.array(det.object_box.ravel()), 4),
                      "score": det.score})
    return table, det

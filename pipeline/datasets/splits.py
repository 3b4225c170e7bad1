"""One split of the prepared ``images`` table: the only place a split is filtered out of it.

Every stage that works on one split (train/val for training, the test split for predict, detect,
score_regions and evaluate) reads it here, so that the empty-split error and the columns are the same
everywhere.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage

# What the split runners need of an image (``uri`` made absolute by read_split).
IMAGE_COLUMNS = ["image_id", "split", "file_name", "uri", "width", "height"]


def split_rows(images: pa.Table, split: str, source: str = "images table", param: str = "") -> pa.Table:
    """Rows of one split, in table order.

    Args:
        source: what ``images`` was read from, for the error.
        param: the params.yaml key that chose the split, for the error ("" when none did).

    Raises:
        ValueError: the split has no row; names the source, the split, the splits present and the param.
    """
    rows = images.filter(pc.equal(images.column("split"), split))
    if rows.num_rows == 0:
        present = sorted(set(images.column("split").to_pylist()))
        where = f" (params.yaml {param})" if param else ""
        raise ValueError(f"{source} has no images of split {split!r}{where}; splits present: {present}")
    return rows


def read_split(images_path: str, split: str, param: str = "", columns: list[str] | None = IMAGE_COLUMNS
               ) -> pa.Table:
    """One split of the images parquet at ``images_path``, ``uri`` absolute (see :func:`split_rows`)."""
    images = storage.read_parquet(images_path, columns=columns)
    return storage.absolute_uris(split_rows(images, split, str(images_path), param))


def test_split(images: pa.Table) -> pa.Table:
    """The test split sorted by image_id (the order every evaluator and score matrix uses)."""
    return split_rows(images, "test").sort_by("image_id")


def test_pairs(images: pa.Table, pairs: pa.Table) -> pa.Table:
    """The ground-truth pairs of the test images."""
    return pairs.filter(pc.is_in(pairs.column("image_id"), value_set=test_split(images).column("image_id")))

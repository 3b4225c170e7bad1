"""Arrow schemas of every artifact the pipeline writes: the contract between stages.

Ids are 0-based. Boxes are [x1, y1, x2, y2] float32 continuous pixel coordinates of the original image:
the 1-based inclusive HICO-DET annotation [x1, y1, x2, y2] becomes [x1 - 1, y1 - 1, x2, y2] (converted once, in
prepare), so x2 - x1 already equals the official code's width x2 - x1 + 1 and IoU adds no extra pixel. ``hoi`` indexes the
600 HICO classes (:mod:`pipeline.vocab`); ``label`` in detections is COCO-80 contiguous (person = 0).
"""
from __future__ import annotations

import pyarrow as pa

BOX = pa.list_(pa.float32(), 4)
HOI_LIST = pa.list_(pa.int16())

IMAGES = pa.schema([
    ("image_id", pa.int64()),
    ("split", pa.string()),            # train | val | test
    ("file_name", pa.string()),
    ("uri", pa.string()),              # absolute path or fsspec URI of the JPEG
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("positives", HOI_LIST),           # label +1
    ("negatives", HOI_LIST),           # label -1 (object present, HOI absent)
    ("ambiguous", HOI_LIST),           # label 0; every HOI not listed is unknown (NaN in anno.mat)
])

PAIRS = pa.schema([
    ("image_id", pa.int64()),
    ("hoi", pa.int16()),
    ("human_box", BOX),
    ("object_box", BOX),
])

CLASSES = pa.schema([
    ("hoi", pa.int16()),
    ("verb", pa.string()),
    ("verb_ing", pa.string()),
    ("object", pa.string()),
    ("verb_idx", pa.int16()),
    ("object_idx", pa.int16()),        # HICO object order (alphabetical)
    ("coco80", pa.int16()),            # COCO-80 contiguous label of the object
    ("n_train_images", pa.int32()),    # positive training images (HICO labels)
    ("n_train_pairs", pa.int32()),     # training human-object pairs (HICO-DET boxes)
    ("rare", pa.bool_()),              # HICO-DET rare: < 10 training pairs
])

REJECTS = pa.schema([
    ("source", pa.string()),           # file the row came from
    ("item", pa.string()),             # image name or row
    ("reason", pa.string()),
])

TEXT_EMBEDDINGS = pa.schema([
    ("hoi", pa.int16()),
    ("prompt", pa.string()),
    ("embedding", pa.list_(pa.float32())),
])

IMAGE_SCORES = pa.schema([
    ("image_id", pa.int64()),
    ("scores", pa.list_(pa.float32())),  # [600] logits
])

DETECTIONS = pa.schema([
    ("image_id", pa.int64()),
    ("box", BOX),
    ("label", pa.int16()),             # COCO-80 contiguous, person = 0
    ("score", pa.float32()),
])

HOI_DETECTIONS = pa.schema([
    ("image_id", pa.int64()),
    ("hoi", pa.int16()),
    ("human_box", BOX),
    ("object_box", BOX),
    ("score", pa.float32()),
])


def conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Returns ``table`` cast to ``schema`` (columns in schema order); raises naming what is wrong."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {schema.names}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValueError(f"{name}: columns do not fit the schema {schema}: {e}") from e

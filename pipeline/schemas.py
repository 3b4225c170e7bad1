"""Arrow schemas of every artifact the pipeline writes: the contract between stages.

Ids are 0-based. Boxes are [x1, y1, x2, y2] float32 continuous pixel coordinates of the original image:
the 1-based inclusive HICO-DET annotation [x1, y1, x2, y2] becomes [x1 - 1, y1 - 1, x2, y2] (converted once, in
prepare), so x2 - x1 already equals the official code's width x2 - x1 + 1 and IoU adds no extra pixel. ``hoi`` is the
class id: the row of ``classes.parquet`` (HICO's 600 HOIs, MPII's 393 activities, a user's own classes), the name
kept from HICO for every dataset; ``label`` in detections is COCO-80 contiguous (person = 0).
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
    ("negatives", HOI_LIST),           # label -1 (HICO: object present, HOI absent; single-label: every other class)
    ("ambiguous", HOI_LIST),           # label 0; every class not listed is unknown (NaN in anno.mat)
])

PAIRS = pa.schema([
    ("image_id", pa.int64()),
    ("hoi", pa.int16()),
    ("human_box", BOX),
    ("object_box", BOX),
])

# The label space, the single source of truth downstream of prepare (docs/datasets.md). Nullable columns are
# null where the dataset has no such fact (MPII activities have no verb / object / COCO object).
CLASSES = pa.schema([
    ("hoi", pa.int16()),               # class id 0..C-1 = classifier row
    ("name", pa.string()),             # display name (HICO: "<verb> <object>"; MPII: the act_name)
    ("verb", pa.string()),             # prompt fields: verb, verb_ing, object (templates add a_object)
    ("verb_ing", pa.string()),
    ("object", pa.string()),
    ("verb_idx", pa.int16()),          # HICO verb order (null for other datasets)
    ("object_idx", pa.int16()),        # HICO object order, alphabetical (null for other datasets)
    ("coco80", pa.int16()),            # COCO-80 contiguous label of the object: gates box pairs; null = none
    ("objects", pa.list_(pa.int16())),  # COCO-80 labels a class pairs with when several (V-COCO roles); null = coco80
    ("category", pa.string()),         # a group of classes (MPII cat_name); null = none
    ("prompt", pa.string()),           # a free-text prompt used as is instead of the templates; null = template
    ("subsets", pa.list_(pa.string())),  # named class sets the dataset defines (HICO: few1_defr)
    ("n_train_images", pa.int32()),    # positive train + val images
    ("n_train_pairs", pa.int32()),     # train + val human-object pairs (boxes)
    ("rare", pa.bool_()),              # rare split of HOI detection (HICO-DET: < 10 training pairs); null = none
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
    ("scores", pa.list_(pa.float32())),  # [C] logits, one per class of classes.parquet
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

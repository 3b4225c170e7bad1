"""The training split of a zero-shot setting (``prepare.zero_shot``): no training image shows an unseen class.

GEN-VLKT's rule for HICO-DET (``datasets/hico.py`` of YueLiao/gen-vlkt), applied to the train and val
splits (val is held out of the training images and picks the best epoch, so it is training data too):

- a human-object pair that carries an unseen class is removed with all its labels (a pair = one human box
  and one object box of an image; the pairs table has one row per class of a pair, so every row with the
  same image and boxes goes);
- an image whose pairs were all removed is removed;
- an image without any box annotation is its own pair: a positive label of an unseen class removes it;
- on the images kept, the label of every unseen class becomes unknown (it leaves the positives, negatives
  and ambiguous lists), and training excludes unseen classes from the loss whatever ``train.unknown_as``
  says (:func:`pipeline.training.dataset.split_samples` reads the setting from the table's metadata), so
  their classifier rows keep their language-embedding initialisation.

Test images are all kept with every label and pair. The classes table keeps a row for every class; its
training counts become those of the kept images and pairs; its ``rare`` flags stay the dataset's own
(HICO-DET's official split, from the complete training set). Every removed image and pair is a row of
the rejects table, with the reason; these removals are the setting, not data loss, so they do not count
against ``checks.max_reject_fraction``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schemas
from pipeline.classes.zero_shot import check_setting, unseen_classes
from pipeline.datasets.build import Prepared, training_counts

TRAINING = ("train", "val")


def apply_zero_shot(prepared: Prepared, setting: str) -> Prepared:
    """``prepared`` with the training split of ``setting`` (see the module docstring); as is for ``none``.

    Raises:
        ValueError: a setting that does not apply to the dataset's classes (not HICO classes).
    """
    if check_setting(setting, "prepare.zero_shot") == "none":
        return prepared
    zs = unseen_classes(setting, prepared.classes, prepared.metadata.get("dataset", "?"))
    C = prepared.classes.num_rows
    unseen = zs.mask(C)
    images, pairs = prepared.images, prepared.pairs
    image_id = images.column("image_id").to_numpy()
    training = np.isin(np.asarray(images.column("split").to_pylist()), TRAINING)
    names = dict(zip(image_id.tolist(), images.column("file_name").to_pylist()))

    # Pairs of training images that carry an unseen class, with every other class of the same boxes.
    p_img = pairs.column("image_id").to_numpy()
    p_hoi = pairs.column("hoi").to_numpy().astype(np.int64)
    boxes = np.column_stack([p_img.astype(np.float64), _boxes(pairs, "human_box"), _boxes(pairs, "object_box")])
    in_training = np.isin(p_img, image_id[training])
    group = np.unique(boxes, axis=0, return_inverse=True)[1].reshape(-1) if len(boxes) else np.zeros(0, np.int64)
    tainted = np.zeros(group.max(initial=-1) + 1, dtype=bool)
    tainted[group[in_training & unseen[p_hoi]]] = True
    drop_pair = in_training & tainted[group]

    # Training images left without a pair, or without boxes and positive for an unseen class.
    order = np.argsort(image_id, kind="stable")
    row = order[np.searchsorted(image_id[order], p_img)]   # the images row of each pair
    had = np.bincount(row, minlength=len(image_id))
    left = np.bincount(row[~drop_pair], minlength=len(image_id))
    positives = images.column("positives").to_pylist()
    shows_unseen = np.fromiter((bool(unseen[p].any()) if p else False for p in positives), bool, len(positives))
    drop_image = training & (((had > 0) & (left == 0)) | ((had == 0) & shows_unseen))

    tag = f"zero-shot {setting}"
    rejects = [(names[int(i)], f"{tag}: every human-object pair of the image carries an unseen class ({had[r]} pair "
                "rows dropped with it; GEN-VLKT's training rule)" if had[r] else f"{tag}: no boxes and a positive "
                "label of an unseen class") for r, i in enumerate(image_id) if drop_image[r]]
    carried: dict[int, set[int]] = {}
    for g, h in zip(group[in_training & unseen[p_hoi]].tolist(), p_hoi[in_training & unseen[p_hoi]].tolist()):
        carried.setdefault(g, set()).add(h)
    for r in np.flatnonzero(drop_pair & ~drop_image[row]):   # a removed image's reject names its pairs
        rejects.append((f"{names[int(p_img[r])]} hoi {p_hoi[r]}", f"{tag}: its human-object pair carries unseen "
                        f"class(es) {sorted(carried[int(group[r])])}"))

    images = _blank_unseen(images.filter(pa.array(~drop_image)), unseen)
    pairs = pairs.filter(pa.array(~drop_pair))   # a removed image had only dropped pairs
    n_images, n_pairs = training_counts(images, pairs, C)
    classes = prepared.classes
    for name, values in (("n_train_images", n_images), ("n_train_pairs", n_pairs)):
        classes = classes.set_column(classes.schema.get_field_index(name), name, pa.array(values, pa.int32()))
    source = f"prepare.zero_shot {setting}"
    extra = pa.table({"source": [source] * len(rejects), "item": [r[0] for r in rejects],
                      "reason": [r[1] for r in rejects]})
    all_rejects = pa.concat_tables([prepared.rejects, schemas.conform(extra, schemas.REJECTS, "rejects")])
    line = (f"{tag}: {int(unseen.sum())} unseen classes (GEN-VLKT's list); {int(drop_image.sum())} training images "
            f"and {int(drop_pair.sum())} training pair rows that show them removed; their classifier rows stay")
    return Prepared(images, pairs, classes, all_rejects, {**prepared.metadata, "zero_shot": zs.to_json()},
                    [*prepared.summary, line])


def _boxes(pairs: pa.Table, column: str) -> np.ndarray:
    flat = pc.list_flatten(pairs.column(column)).to_numpy()
    return np.asarray(flat, dtype=np.float64).reshape(-1, 4)


def _blank_unseen(images: pa.Table, unseen: np.ndarray) -> pa.Table:
    """Training rows with every unseen class removed from their label lists (test rows unchanged)."""
    training = np.isin(np.asarray(images.column("split").to_pylist()), TRAINING)
    for column in ("positives", "negatives", "ambiguous"):
        values = [[c for c in lst if not unseen[c]] if tr else lst
                  for lst, tr in zip(images.column(column).to_pylist(), training)]
        field = images.schema.field(column)
        images = images.set_column(images.schema.get_field_index(column), field, pa.array(values, field.type))
    return images


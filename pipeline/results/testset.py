"""The HICO-DET test set an external result file is scored against: image names in the official order,
ground-truth pairs, the rare split and the image labels of the Known-Object setting.

Annotations: ``instances_test2015.json`` (pocket / UPT form) or the official ``anno_bbox.mat``
(``bbox_test``), local paths or fsspec URIs, read by :mod:`pipeline.datasets.hicodet` (boxes become the
pipeline's continuous [x1 - 1, y1 - 1, x2, y2]). Image ``i`` of the evaluation is the i-th test image of
the annotation file, the column order of the official ``all_boxes`` (``anno.mat`` ``list_test`` has the
same 9,658 names in the same order).

Known object, as ``eval_one.m``: a class's detections count only on images with a positive HICO image label
(``anno.mat`` ``anno_test``) of any class of its object. Without ``anno.mat`` the images that hold a
ground-truth pair of the object stand in for them; on the real test set that misses 118 of the official
9,827 (image, object) cells, so the report says which rule was used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pipeline.datasets.files import AnnotationError
from pipeline.classes.hico_vocab import Vocabulary, hico_vocabulary

log = logging.getLogger(__name__)


@dataclass
class HicoDetTestSet:
    """What the HICO-DET evaluation needs, with 0-based HOI ids and image indices.

    Attributes:
        file_names: test image names in annotation order (index = image id of the evaluation).
        pairs: ground truth as arrays: image_id, hoi, human_box, object_box (continuous, float64).
        rare: [600] bool, the official rare split (< 10 training pairs).
        object_images: (image ids, HICO object ids) that count as "the image holds the object".
        sources: what each part was read from, for the report.
    """

    file_names: list[str]
    pairs: dict
    rare: np.ndarray
    object_images: tuple[np.ndarray, np.ndarray]
    sources: dict = field(default_factory=dict)
    _index: dict = field(default_factory=dict, repr=False)

    @property
    def num_images(self) -> int:
        return len(self.file_names)

    def image_index(self, names) -> np.ndarray:
        """Image id of each name (file name, with or without folder; -1 where it is not a test image)."""
        if not self._index:
            self._index.update({n: i for i, n in enumerate(self.file_names)})
        index = self._index
        out = np.empty(len(names), dtype=np.int64)
        for k, name in enumerate(names):
            i = index.get(name, -1)
            if i < 0 and isinstance(name, str) and "/" in name:
                i = index.get(name.rsplit("/", 1)[1], -1)
            out[k] = i
        return out


def read_test_set(anno: str, hico_anno: str = "", vocab: Vocabulary | None = None) -> HicoDetTestSet:
    """Reads the HICO-DET test annotations (and, optionally, ``anno.mat`` for the Known-Object rule).

    Args:
        anno: ``instances_test2015.json`` or ``anno_bbox.mat`` (path or URI).
        hico_anno: HICO's ``anno.mat``; "" = the Known-Object rule falls back to the ground-truth pairs.
        vocab: the HICO vocabulary (default: the bundled one).

    Raises:
        AnnotationError: a malformed file, or an ``anno.mat`` whose test list differs from the boxes' images.
    """
    from pipeline.datasets.hicodet import read_anno_bbox_mat, read_instances_json

    vocab = vocab or hico_vocabulary()
    if anno.endswith(".mat"):
        images, rare_ids = read_anno_bbox_mat(anno, "test"), None
    elif anno.endswith(".json"):
        images, rare_ids = read_instances_json(anno, len(vocab))
    else:
        raise AnnotationError(f"{anno}: expected instances_test2015.json or anno_bbox.mat")
    bad = [img for img in images if img.problem]
    if bad:
        raise AnnotationError(f"{anno}: {bad[0].file_name}: {bad[0].problem}")
    names = [img.file_name for img in images]
    counts = np.array([len(img.hois) for img in images], dtype=np.int64)
    image_id = np.repeat(np.arange(len(images)), counts)
    hoi = np.array([h for img in images for h in img.hois], dtype=np.int64)
    human = np.array([b for img in images for b in img.human_boxes], dtype=np.float64).reshape(-1, 4)
    obj = np.array([b for img in images for b in img.object_boxes], dtype=np.float64).reshape(-1, 4)
    if ((hoi < 0) | (hoi >= len(vocab))).any():
        raise AnnotationError(f"{anno}: HOI id {int(hoi[(hoi < 0) | (hoi >= len(vocab))][0]) + 1} is not one of "
                              f"the {len(vocab)} HICO classes")
    pairs = {"image_id": image_id, "hoi": hoi, "human_box": human, "object_box": obj}
    rare = np.zeros(len(vocab), dtype=bool)
    rare[sorted(rare_ids if rare_ids is not None else vocab.hicodet_rare)] = True
    sources = {"annotation": anno,
               "rare": f"{anno} 'rare'" if rare_ids is not None else "the official 138-class list (bundled)"}
    if hico_anno:
        object_images = _label_objects(hico_anno, names, vocab)
        sources["known_object"] = f"positive image labels of {hico_anno} (as eval_one.m)"
    else:
        object_images = (image_id, vocab.hoi_object[hoi])
        sources["known_object"] = ("images with a ground-truth pair of the object (no anno.mat given: the "
                                   "official rule uses its image labels, which on the real test set add 118 "
                                   "(image, object) cells)")
    log.info("HICO-DET test set: %d images, %d pairs (%s)", len(names), len(hoi), anno)
    return HicoDetTestSet(names, pairs, rare, object_images, sources)


def read_anno_test(uri: str, vocab: Vocabulary) -> tuple[list[str], np.ndarray]:
    """(test image names, [N, 600] labels in HICO's coding) from ``anno.mat``, reading only ``anno_test`` and
    ``list_test`` (``anno_train`` is 20 times larger and not needed to score test results).

    Raises:
        AnnotationError: a missing field, a wrong shape or a label other than +1 / -1 / 0 / NaN.
    """
    import scipy.io

    from pipeline import storage
    from pipeline.datasets.hico_anno import VALID_LABELS, _names

    with storage.open_file(uri) as f:
        try:
            mat = scipy.io.loadmat(f, variable_names=["anno_test", "list_test"])
        except Exception as e:  # scipy raises several unrelated types for a bad file
            raise AnnotationError(f"{uri}: not a readable MATLAB file ({e})") from e
    missing = [k for k in ("anno_test", "list_test") if k not in mat]
    if missing:
        raise AnnotationError(f"{uri}: missing field(s) {missing} (expected HICO's anno.mat)")
    names = _names(mat["list_test"], uri, "list_test")
    anno = np.asarray(mat["anno_test"], dtype=np.float64)
    if anno.shape != (len(vocab), len(names)):
        raise AnnotationError(f"{uri}: field 'anno_test' has shape {anno.shape}, expected ({len(vocab)}, {len(names)})")
    known = anno[~np.isnan(anno)]
    if (~np.isin(known, VALID_LABELS)).any():
        raise AnnotationError(f"{uri}: field 'anno_test' holds values other than +1, -1, 0 and NaN")
    return names, anno.T


def _label_objects(uri: str, names: list[str], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(image id, object) of every positive ``anno_test`` label, in the box annotation's image order."""
    test_names, labels = read_anno_test(uri, vocab)
    if test_names != names:
        first = next((i for i, (a, b) in enumerate(zip(test_names, names)) if a != b), min(len(names), len(test_names)))
        raise AnnotationError(f"{uri}: list_test ({len(test_names)} images) differs from the box annotation's "
                              f"test images ({len(names)}) at position {first + 1}")
    rows, hois = np.nonzero(labels == 1)
    return rows.astype(np.int64), vocab.hoi_object[hois]

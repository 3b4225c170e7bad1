"""Reader for HICO's ``anno.mat`` (image-level HOI labels, Chao et al. ICCV 2015).

``anno_train`` / ``anno_test`` are [600, N] with +1 positive, -1 negative, 0 ambiguous, NaN unknown;
``list_train`` / ``list_test`` name the images; ``list_action`` names the classes (nname / vname).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.io

from pipeline import storage
from pipeline.datasets.files import AnnotationError
from pipeline.classes.hico_vocab import Vocabulary

REQUIRED_FIELDS = ("list_action", "anno_train", "anno_test", "list_train", "list_test")
VALID_LABELS = (-1.0, 0.0, 1.0)

@dataclass
class HicoSplit:
    file_names: list[str]
    labels: np.ndarray  # [N, 600] float32, HICO coding


def _names(cell: np.ndarray, path: str, field: str) -> list[str]:
    try:
        return [str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(cell, dtype=object).reshape(-1)]
    except (IndexError, TypeError) as e:
        raise AnnotationError(f"{path}: field {field!r} is not a cell array of names ({e})") from e


def read_anno_mat(uri: str, vocab: Vocabulary) -> dict[str, HicoSplit]:
    """Reads ``anno.mat`` into {"train": HicoSplit, "test": HicoSplit} with [N, 600] labels.

    Raises:
        AnnotationError: a field is missing, has the wrong shape, holds values other than
            +1/-1/0/NaN, or ``list_action`` disagrees with the HICO vocabulary.
    """
    with storage.open_file(uri) as f:
        try:
            mat = scipy.io.loadmat(f)
        except Exception as e:  # scipy raises several unrelated types for a bad file
            raise AnnotationError(f"{uri}: not a readable MATLAB file ({e})") from e
    missing = [k for k in REQUIRED_FIELDS if k not in mat]
    if missing:
        raise AnnotationError(f"{uri}: missing field(s) {missing}; expected {list(REQUIRED_FIELDS)}")
    actions = np.asarray(mat["list_action"]).reshape(-1)
    if len(actions) != len(vocab):
        raise AnnotationError(f"{uri}: field 'list_action' has {len(actions)} classes, expected {len(vocab)}")
    for i, a in enumerate(actions):
        try:
            obj, verb = str(a["nname"].reshape(-1)[0]), str(a["vname"].reshape(-1)[0])
        except (ValueError, IndexError, KeyError) as e:
            raise AnnotationError(f"{uri}: field 'list_action' entry {i + 1} lacks nname/vname ({e})") from e
        c = vocab[i]
        if (obj, verb) != (c.object, c.verb):
            raise AnnotationError(f"{uri}: list_action entry {i + 1} is ({verb}, {obj}); HICO class {i + 1} "
                                  f"is ({c.verb}, {c.object})")
    out = {}
    for split in ("train", "test"):
        names = _names(mat[f"list_{split}"], uri, f"list_{split}")
        anno = np.asarray(mat[f"anno_{split}"], dtype=np.float64)
        if anno.shape != (len(vocab), len(names)):
            raise AnnotationError(f"{uri}: field 'anno_{split}' has shape {anno.shape}, expected "
                                  f"({len(vocab)}, {len(names)}) = (classes, len(list_{split}))")
        known = anno[~np.isnan(anno)]
        bad = ~np.isin(known, VALID_LABELS)
        if bad.any():
            raise AnnotationError(f"{uri}: field 'anno_{split}' holds value {float(known[bad][0])}; "
                                  "expected +1, -1, 0 or NaN")
        out[split] = HicoSplit(names, anno.T.astype(np.float32))
    return out

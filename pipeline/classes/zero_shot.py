"""HICO-DET's zero-shot settings: which classes a model never sees in training.

Since GEN-VLKT (Liao et al., CVPR 2022) HOI papers report four settings beside HICO-DET's Default one, each
with a published list of unseen classes (``pipeline/assets/hico_zero_shot.json``, GEN-VLKT's
``hico_unseen_index``, 0-based into HICO-DET's 600 classes): ``rf-uc`` (rare-first unseen composition, 120
classes), ``nf-uc`` (non-rare-first, 120), ``uo`` (unseen object: the 100 classes of 12 objects) and ``uv``
(unseen verb: the 84 classes of 20 verbs). Seen = every other class; each of Full / Seen / Unseen is the
mean of the per-class AP over its classes.

The lists index HICO's classes, so a setting applies to a label space whose every class is a HICO class
(matched by verb and object names: the ``hico`` adapter's 600 classes, or a ``table`` dataset of HICO
classes); :func:`unseen_classes` refuses any other. A prepared dataset in a setting carries
``{"zero_shot": {"setting", "unseen", "source"}}`` (``unseen``: class ids of that dataset) in the ``defr``
schema metadata of its tables, written by prepare; :func:`pipeline.classes.space.read_zero_shot` reads it
back for training (the unseen classes get no loss) and evaluation (Seen / Unseen).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa

from pipeline.choices import ZERO_SHOT
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.classes.space import ZeroShot

ASSET = "hico_zero_shot.json"


@lru_cache(maxsize=1)
def _asset() -> dict:
    return json.loads(resources.files("pipeline.assets").joinpath(ASSET).read_text())


def source_line() -> str:
    """Where the lists come from, in one line (for metadata, reports and docs)."""
    s = _asset()["source"]
    return f"{s['object']} of {s['repository']} @ {s['commit']} ({s['path']}, {s['licence']})"


def check_setting(setting: str, param: str = "zero_shot") -> str:
    """``setting`` if it is one of :data:`ZERO_SHOT`; raises ValueError naming ``param`` otherwise."""
    if setting not in ZERO_SHOT:
        raise ValueError(f"{param} {setting!r}: expected one of {', '.join(ZERO_SHOT)}")
    return setting


def hico_unseen(setting: str) -> np.ndarray:
    """Sorted 0-based HICO-DET class ids unseen in ``setting`` (empty for ``none``)."""
    if check_setting(setting) == "none":
        return np.zeros(0, dtype=np.int64)
    return np.asarray(sorted(_asset()["settings"][setting]["unseen"]), dtype=np.int64)


def unseen_classes(setting: str, classes: pa.Table, dataset: str = "hico") -> ZeroShot:
    """The unseen classes of ``setting`` among the rows of a classes table, matched to HICO's classes by
    their verb and object (or by a name ``"<verb> <object>"`` where the table has no verb/object).

    Raises:
        ValueError: an unknown setting, or a class that is not one of HICO's 600 (MPII's activities, a
            table of other classes): the unseen lists index HICO's classes only.
    """
    check_setting(setting, "prepare.zero_shot")
    vocab = hico_vocabulary()
    by_name = {f"{vocab[h].verb} {vocab[h].object}": h for h in range(len(vocab))}
    cols = {c: classes.column(c).to_pylist() if c in classes.column_names else [None] * classes.num_rows
            for c in ("name", "verb", "object")}
    unseen = set(hico_unseen(setting).tolist())
    out = []
    for row, (name, verb, obj) in enumerate(zip(cols["name"], cols["verb"], cols["object"])):
        key = f"{verb} {obj}" if verb is not None and obj is not None else name
        if key not in by_name:
            raise ValueError(
                f"prepare.zero_shot {setting!r} applies to HICO's classes only (its unseen lists index HICO-DET's "
                f"600 classes), but class {row} {name!r} of dataset {dataset!r} is not a HICO class (matched by "
                "verb and object names); set prepare.zero_shot: none")
        if by_name[key] in unseen:
            out.append(row)
    return ZeroShot(setting, tuple(out), source_line())

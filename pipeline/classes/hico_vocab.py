"""The HICO vocabulary, facts of the HICO adapter: 600 HOI classes = (verb, object) pairs over 117 verbs
and 80 COCO objects, with HICO's own lists (HICO-DET's official rare classes, DEFR's Few@1 list, the
training positives of ``anno.mat``) and HICO's object order.

Only the HICO adapter (:mod:`pipeline.datasets.hico`), the HICO demo generator and HICO-specific file
formats (``hico80`` detection labels) read it; everything downstream of prepare takes its classes from
``classes.parquet`` (:mod:`pipeline.classes`). Ids are 0-based. Objects are in HICO's alphabetical order
(``object_idx``); detectors speak COCO-80 contiguous order (person = 0), mapped by ``coco80_to_object``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

import numpy as np

NUM_HOIS = 600
NUM_VERBS = 117
NUM_OBJECTS = 80
NO_INTERACTION = "no_interaction"


@dataclass(frozen=True)
class HOI:
    hoi: int
    verb_idx: int
    object_idx: int
    verb: str
    verb_ing: str
    object: str


class Vocabulary:
    """The 600 HICO classes with lookups; build it with :func:`hico_vocabulary`."""

    def __init__(self, raw: dict):
        self.objects: list[str] = raw["objects"]
        self.verbs: list[str] = raw["verbs"]
        self.verbs_ing: list[str] = raw["verbs_ing"]
        self.hoi_pairs = np.asarray(raw["hois"], dtype=np.int64)  # [600, 2] (verb_idx, object_idx)
        self.coco80_to_object = np.asarray(raw["coco80_to_object"], dtype=np.int64)
        self.hicodet_rare = frozenset(raw["hicodet_rare"])
        self.hico_train_positives = np.asarray(raw["hico_train_positives"], dtype=np.int64)
        self.defr_few1 = frozenset(raw["defr_few1"])

    def __len__(self) -> int:
        return len(self.hoi_pairs)

    def __getitem__(self, hoi: int) -> HOI:
        if not 0 <= hoi < len(self):
            raise IndexError(f"HOI id {hoi} out of range [0, {len(self)})")
        v, o = (int(x) for x in self.hoi_pairs[hoi])
        return HOI(hoi, v, o, self.verbs[v], self.verbs_ing[v], self.objects[o])

    @cached_property
    def hoi_object(self) -> np.ndarray:
        """[600] object index of each HOI."""
        return self.hoi_pairs[:, 1].copy()

    @cached_property
    def hoi_verb(self) -> np.ndarray:
        return self.hoi_pairs[:, 0].copy()

    @cached_property
    def object_to_hois(self) -> list[np.ndarray]:
        """For each object index, the HOI ids that involve it (sorted)."""
        return [np.flatnonzero(self.hoi_object == o) for o in range(NUM_OBJECTS)]

    @cached_property
    def object_to_coco80(self) -> np.ndarray:
        inv = np.empty(NUM_OBJECTS, dtype=np.int64)
        inv[self.coco80_to_object] = np.arange(NUM_OBJECTS)
        return inv

    @cached_property
    def coco80_names(self) -> list[str]:
        return [self.objects[o] for o in self.coco80_to_object]

    def index(self, verb: str, obj: str) -> int:
        """HOI id of (verb, object) by name; raises KeyError naming the pair."""
        try:
            return self._by_name[(verb, obj)]
        except KeyError:
            raise KeyError(f"({verb!r}, {obj!r}) is not a HICO HOI class") from None

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], int]:
        return {(self.verbs[v], self.objects[o]): i for i, (v, o) in enumerate(self.hoi_pairs)}

    def few_shot(self, k: int, train_positives: np.ndarray | None = None) -> np.ndarray:
        """HOI ids with 1..k positive training images (Few@k; HICO counts by default).

        Few@1 by this rule has 51 classes on HICO; the DEFR paper's list has 49 (it leaves out
        car/jump and mouse/repair): see :attr:`defr_few1`.
        """
        counts = self.hico_train_positives if train_positives is None else np.asarray(train_positives)
        return np.flatnonzero((counts >= 1) & (counts <= k))


@lru_cache(maxsize=1)
def hico_vocabulary() -> Vocabulary:
    raw = json.loads(resources.files("pipeline.assets").joinpath("hico_vocab.json").read_text())
    return Vocabulary(raw)

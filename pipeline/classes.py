"""The label space of a dataset or a model: class names and the object category each class involves.

Every layer downstream of prepare takes its classes from here (built from ``classes.parquet``, or from a
checkpoint's ``config.json``), never from the HICO vocabulary: a model trained on MPII or on a user's
own 5 classes reads and scores exactly like a HICO one. ``coco80`` is the COCO-80 contiguous label
(person = 0) of the class's object, what detectors output; classes without such an object (MPII
activities, a user's free-text classes) have none, so no box pair can score them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    """One class: its display name, its verb and object where the dataset has them."""

    name: str
    verb: str | None = None
    object: str | None = None
    coco80: int | None = None


class ClassSpace:
    """An ordered list of classes (index = class id = classifier row)."""

    def __init__(self, classes: Sequence[ClassInfo]):
        self.classes = list(classes)
        if not self.classes:
            raise ValueError("a class space needs at least one class")

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int) -> ClassInfo:
        return self.classes[i]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @cached_property
    def coco80(self) -> np.ndarray:
        """[C] int64 COCO-80 label of each class's object, -1 where the class has none."""
        return np.asarray([-1 if c.coco80 is None else int(c.coco80) for c in self.classes], dtype=np.int64)

    @property
    def has_objects(self) -> bool:
        """Whether any class involves a detectable (COCO) object, i.e. HOI detection applies."""
        return bool((self.coco80 >= 0).any())

    def allowed(self, object_label: np.ndarray) -> np.ndarray:
        """[P, C] bool: the classes whose object is each pair's object category (COCO-80 labels)."""
        object_label = np.asarray(object_label, dtype=np.int64)
        bad = np.flatnonzero((object_label < 0) | (object_label >= 80))
        if len(bad):
            raise ValueError(f"object label {object_label[bad[0]]} is not a COCO-80 contiguous label [0, 80)")
        return object_label[:, None] == self.coco80[None, :]

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-able form (stored in a checkpoint's config.json)."""
        return [asdict(c) for c in self.classes]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]], source: str = "classes") -> "ClassSpace":
        out = []
        for i, item in enumerate(items):
            try:
                out.append(ClassInfo(**item))
            except TypeError as e:
                raise ValueError(f"{source} entry {i}: {e}; expected keys name, verb, object, coco80") from e
        return cls(out)

    @classmethod
    def hico(cls) -> "ClassSpace":
        """The 600 HICO classes (names ``"<verb> <object>"`` as in HICO's own lists)."""
        from pipeline.vocab import hico_vocabulary

        vocab = hico_vocabulary()
        coco = vocab.object_to_coco80
        return cls([ClassInfo(f"{c.verb} {c.object}", c.verb, c.object, int(coco[c.object_idx]))
                    for c in (vocab[h] for h in range(len(vocab)))])


def model_classes(config) -> ClassSpace:
    """The classes of a model (a :class:`pipeline.model.ModelConfig`): its own list, or HICO's for a
    checkpoint written before checkpoints carried their classes (600 rows)."""
    if getattr(config, "classes", None):
        space = ClassSpace.from_list(config.classes, "model config classes")
        if len(space) != config.num_classes:
            raise ValueError(f"model config lists {len(space)} classes but has {config.num_classes} rows")
        return space
    if config.num_classes == 600:
        return ClassSpace.hico()
    raise ValueError(f"model config has {config.num_classes} classes and no class list: cannot name its outputs")

"""The label space of a dataset or a model: class names and the object category each class involves.

Every layer downstream of prepare takes its classes from here (built from ``classes.parquet``, or from a
checkpoint's ``config.json``), never from the HICO vocabulary: a model trained on MPII or on a user's
own 5 classes reads and scores exactly like a HICO one. ``coco80`` is the COCO-80 contiguous label
(person = 0) of the class's object, what detectors output; classes without such an object (MPII
activities, a user's free-text classes) have none, so no box pair can score them.

A space built from a prepared ``classes.parquet`` (:meth:`ClassSpace.from_table`) also carries what
evaluation needs: the dataset and its label mode, the table's other per-class columns (training counts,
``rare``, ``category``), the named class subsets, the object index of the known-object settings and the
zero-shot setting it was prepared in (:attr:`ClassSpace.zero_shot`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from pipeline.choices import ZERO_SHOT


@dataclass(frozen=True)
class ClassInfo:
    """One class: its display name, its verb and object where the dataset has them.

    ``objects``: the COCO-80 labels a class's box pairs may have as object when there can be several
    (V-COCO's roles: "hold obj" takes any object, "ride instr" ten); None = ``coco80`` alone.
    """

    name: str
    verb: str | None = None
    object: str | None = None
    coco80: int | None = None
    objects: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ZeroShot:
    """A HICO-DET zero-shot setting applied to one label space (:mod:`pipeline.classes.zero_shot`).

    Attributes:
        setting: one of :data:`pipeline.choices.ZERO_SHOT` but ``none``.
        unseen: the unseen class ids of that label space (rows of its classes table), sorted.
        source: where the unseen lists come from.
    """

    setting: str
    unseen: tuple[int, ...]
    source: str = ""

    def mask(self, num_classes: int) -> np.ndarray:
        """[num_classes] bool, True for an unseen class."""
        out = np.zeros(num_classes, dtype=bool)
        out[list(self.unseen)] = True
        return out

    def to_json(self) -> dict:
        return {"setting": self.setting, "unseen": list(self.unseen), "source": self.source}


def read_zero_shot(table: pa.Table, source: str = "table") -> ZeroShot | None:
    """The zero-shot setting a prepared table was made in (``zero_shot`` of its ``defr`` schema metadata,
    written by prepare), None when none.

    Raises:
        ValueError: naming ``source``, a ``zero_shot`` entry that is not a setting with class ids.
    """
    entry = _prepare_facts(table, source).get("zero_shot")
    if not entry:
        return None
    try:
        setting, unseen = entry["setting"], tuple(sorted(int(c) for c in entry["unseen"]))
        if setting not in ZERO_SHOT:
            raise ValueError(f"setting {setting!r} is not one of {ZERO_SHOT}")
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}: schema metadata defr.zero_shot is not a setting with its unseen class ids "
                         f"({e})") from e
    return None if setting == "none" else ZeroShot(setting, unseen, str(entry.get("source", "")))


class ClassSpace:
    """An ordered list of classes (index = class id = classifier row).

    Args:
        classes: the classes in class-id order.
        table: the checked classes table they were read from (:meth:`from_table`), whose other columns
            :meth:`column` reads; None builds one from ``classes`` (hoi, name, verb, object, coco80).
        dataset: the dataset the classes belong to (``hico``, ``mpii``, ``table``...), None when unknown
            (a model's classes).
        label_mode: ``multi`` (HICO's protocol) or ``single`` (one positive class per image, MPII).
    """

    def __init__(self, classes: Sequence[ClassInfo], table: pa.Table | None = None, dataset: str | None = None,
                 label_mode: str = "multi"):
        self.classes = list(classes)
        if not self.classes:
            raise ValueError("a class space needs at least one class")
        if table is not None and table.num_rows != len(self.classes):
            raise ValueError(f"classes table has {table.num_rows} rows for {len(self.classes)} classes")
        self._table = table
        self.dataset = dataset
        self.label_mode = label_mode

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int) -> ClassInfo:
        return self.classes[i]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @cached_property
    def table(self) -> pa.Table:
        """The classes table, one row per class in class-id order."""
        if self._table is not None:
            return self._table
        return pa.table({"hoi": pa.array(range(len(self)), pa.int16()), "name": pa.array(self.names, pa.string()),
                         "verb": pa.array([c.verb for c in self.classes], pa.string()),
                         "object": pa.array([c.object for c in self.classes], pa.string()),
                         "coco80": pa.array([c.coco80 for c in self.classes], pa.int16())})

    def column(self, name: str) -> np.ndarray | None:
        """A column of :attr:`table` as an array indexed by class id; None when the table lacks it or it
        is all null."""
        if name not in self.table.column_names or self.table.column(name).null_count == len(self):
            return None
        return self.table.column(name).to_numpy(zero_copy_only=False)

    @cached_property
    def object_index(self) -> np.ndarray | None:
        """[C] index of each class's object (classes sharing an object share it); None unless every class
        has an object (the known-object settings need one per class)."""
        objects = [c.object for c in self.classes]
        if None in objects:
            return None
        return np.unique(np.asarray(objects, dtype=object), return_inverse=True)[1].astype(np.int64)

    @property
    def rare(self) -> np.ndarray | None:
        """[C] bool: the dataset's rare classes; None where it defines no rare split."""
        values = self.column("rare")
        return None if values is None else np.asarray([bool(v) for v in values])

    @cached_property
    def zero_shot(self) -> ZeroShot | None:
        """The zero-shot setting the prepared dataset was made in (its unseen class ids), None when none."""
        return None if self._table is None else read_zero_shot(self._table, "classes table")

    @property
    def subsets(self) -> dict[str, list[int]]:
        """Named class sets of the dataset (HICO: ``few1_defr``), sorted by name."""
        if "subsets" not in self.table.column_names:
            return {}
        out: dict[str, list[int]] = {}
        for c, names in enumerate(self.table.column("subsets").to_pylist()):
            for name in names or []:
                out.setdefault(name, []).append(c)
        return dict(sorted(out.items()))

    @cached_property
    def coco80(self) -> np.ndarray:
        """[C] int64 COCO-80 label of each class's object, -1 where the class has none."""
        return np.asarray([-1 if c.coco80 is None else int(c.coco80) for c in self.classes], dtype=np.int64)

    @cached_property
    def _pairable(self) -> np.ndarray:
        """[80, C] bool: COCO-80 label x class, True where a pair with that object can score the class."""
        table = np.arange(80)[:, None] == self.coco80[None, :]
        for c, info in enumerate(self.classes):
            if info.objects:
                table[list(info.objects), c] = True
        return table

    @property
    def has_objects(self) -> bool:
        """Whether any class involves a detectable (COCO) object, i.e. HOI detection applies."""
        return bool(self._pairable.any())

    def allowed(self, object_label: np.ndarray) -> np.ndarray:
        """[P, C] bool: the classes whose object is each pair's object category (COCO-80 labels)."""
        object_label = np.asarray(object_label, dtype=np.int64)
        bad = np.flatnonzero((object_label < 0) | (object_label >= 80))
        if len(bad):
            raise ValueError(f"object label {object_label[bad[0]]} is not a COCO-80 contiguous label [0, 80)")
        return self._pairable[object_label]

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-able form (stored in a checkpoint's config.json)."""
        return [asdict(c) for c in self.classes]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]], source: str = "classes") -> "ClassSpace":
        out = []
        for i, item in enumerate(items):
            try:
                objects = item.get("objects")
                out.append(ClassInfo(**{**item, "objects": tuple(objects)} if objects else item))
            except TypeError as e:
                raise ValueError(f"{source} entry {i}: {e}; expected keys name, verb, object, coco80") from e
        return cls(out)

    @classmethod
    def from_table(cls, table: pa.Table, source: str = "classes", dataset: str | None = None,
                   label_mode: str | None = None) -> "ClassSpace":
        """The classes of a ``classes.parquet`` table (checked by :func:`check_classes`); the space keeps
        the checked table for :meth:`column`.

        Args:
            table: e.g. ``storage.read_parquet(".../classes.parquet")``, which keeps the schema metadata.
            source: what the table was read from, for errors.
            dataset, label_mode: None takes them from the ``defr`` key of the table's schema metadata
                (written by the prepare stage); a table without it was written before datasets had
                adapters: HICO, multi-label.

        Raises:
            ValueError: a table :func:`check_classes` refuses, or ``defr`` metadata that is not a JSON
                object (both name ``source``).
        """
        facts = _prepare_facts(table, source)
        dataset = dataset if dataset is not None else facts.get("dataset", "hico")
        label_mode = label_mode if label_mode is not None else facts.get("label_mode", "multi")
        table = check_classes(table, source)
        cols = {c: table.column(c).to_pylist() if c in table.column_names else [None] * table.num_rows
                for c in ("name", "verb", "object", "coco80", "objects")}
        return cls([ClassInfo(n, v, o, None if c is None else int(c), None if s is None else tuple(int(x) for x in s))
                    for n, v, o, c, s in zip(cols["name"], cols["verb"], cols["object"], cols["coco80"],
                                             cols["objects"])],
                   table, dataset, label_mode)

    @classmethod
    def hico(cls) -> "ClassSpace":
        """The 600 HICO classes (names ``"<verb> <object>"`` as in HICO's own lists)."""
        from pipeline.classes.hico_vocab import hico_vocabulary

        vocab = hico_vocabulary()
        coco = vocab.object_to_coco80
        return cls([ClassInfo(f"{c.verb} {c.object}", c.verb, c.object, int(coco[c.object_idx]))
                    for c in (vocab[h] for h in range(len(vocab)))], dataset="hico")


def _prepare_facts(table: pa.Table, source: str) -> dict[str, Any]:
    """The prepare stage's facts about a classes table (``defr`` schema metadata); {} when it has none."""
    text = (table.schema.metadata or {}).get(b"defr", b"") or b"{}"
    try:
        facts = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{source}: schema metadata 'defr' is not JSON ({e})") from e
    if not isinstance(facts, dict):
        raise ValueError(f"{source}: schema metadata 'defr' is {type(facts).__name__}, expected a JSON object")
    return facts


def check_classes(table: pa.Table, source: str = "classes") -> pa.Table:
    """A classes table sorted by class id, checked: ``hoi`` holds each of 0..C-1 once and every class has
    a non-empty, unique name. A table written before classes had names gets ``"<verb> <object>"``.

    Raises:
        ValueError: naming ``source`` and the first bad row.
    """
    if "hoi" not in table.column_names:
        raise ValueError(f"{source}: no 'hoi' column (the class id)")
    if table.num_rows == 0:
        raise ValueError(f"{source}: no classes")
    hoi = table.column("hoi").to_pylist()
    if None in hoi or sorted(hoi) != list(range(len(hoi))):
        bad = next((r for r, h in enumerate(hoi) if h is None or not 0 <= h < len(hoi)), None)
        where = f"row {bad}: hoi {hoi[bad]!r} is outside [0, {len(hoi)})" if bad is not None else "duplicate hoi ids"
        raise ValueError(f"{source} {where}; expected each class id 0..{len(hoi) - 1} exactly once")
    table = table.take(np.argsort(np.asarray(hoi), kind="stable"))
    if "name" not in table.column_names:
        if not {"verb", "object"} <= set(table.column_names):
            raise ValueError(f"{source}: no 'name' column (and no verb / object to name the classes by)")
        names = [f"{v} {o}" for v, o in zip(table.column("verb").to_pylist(), table.column("object").to_pylist())]
        table = table.append_column("name", pa.array(names, pa.string()))
    names = table.column("name").to_pylist()
    seen: dict[str, int] = {}
    for row, name in enumerate(names):
        if not name or not str(name).strip():
            raise ValueError(f"{source} class {row}: empty name")
        if name in seen:
            raise ValueError(f"{source} class {row}: name {name!r} repeats class {seen[name]}")
        seen[name] = row
    return table


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

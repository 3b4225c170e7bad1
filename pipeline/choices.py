"""The allowed values of every named option, in one place for the library and the params schema.

The library checks its arguments against these tuples and ``stage_support/schema.py`` checks params.yaml
against the same ones, so a new loss, backend or rule is added here once. This module imports nothing, so
checking params.yaml stays a matter of milliseconds (no torch). The order is the one messages and
docs/params.md list.
"""

# Datasets (pipeline/datasets/)
DATASETS = ("hico", "mpii", "table", "vcoco")  # the adapters that read a raw dataset (prepare.dataset)
LABEL_MODES = ("multi", "single")  # labels per image of a table dataset
# HICO-DET's zero-shot settings (GEN-VLKT's unseen lists, pipeline/assets/hico_zero_shot.json): rare-first and
# non-rare-first unseen composition, unseen object, unseen verb; none = every class seen in training
ZERO_SHOT = ("none", "rf-uc", "nf-uc", "uo", "uv")
SPLITS = ("train", "val", "test")

# Text embeddings (pipeline/text/)
EMBED_BACKENDS = ("open_clip", "transformers", "sentence_transformers")
POOLINGS = ("cls", "mean", "pooler")
TEMPLATE_FIELDS = ("verb", "verb_ing", "object", "a_object", "name", "category")  # {fields} of a prompt template

# Model and training (pipeline/model.py, pipeline/training/)
CLASSIFIER_POSITIONS = ("auto", "pre_proj", "post_proj")
INITS = ("text", "random")  # classifier initialisation
LOSSES = ("lse_sign", "bce", "weighted_bce", "focal", "softmax_ce")
LABEL_MAPPINGS = ("negative", "ignore", "positive")  # how an ambiguous HICO label is read
UNKNOWN_MAPPINGS = ("negative", "ignore")  # how an unknown (NaN) label is read: never as a positive
AUGMENT_MODES = ("auto", "batch", "pil")
DECODE_PLACES = ("loader", "device")  # where training JPEGs are decoded

# Detection (pipeline/detection/, pipeline/classes/coco.py)
DETECT_BACKENDS = ("mmdet", "precomputed", "oracle")
PRECOMPUTED_FORMATS = ("hico_json", "table", "boxes_json")
LABEL_SPACES = ("coco80", "coco91", "hico80")  # numberings of the 80 COCO object categories

# Regional scoring (pipeline/regions/)
PATCH_RULES = ("any", "center", "fraction")  # which patches a box covers
SCORE_PATHS = ("shared_prefix", "naive")

# Placement (pipeline/placement.py)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")  # autocast: auto = bf16 on CUDA, fp32 on CPU (pipeline/precision.py)

# Other models' HICO-DET results (pipeline/results/)
RESULT_FORMATS = ("auto", "mat", "detr", "table", "pipeline")
MAT_OBJECT_ORDERS = ("auto", "coco", "hico")  # numbering of detections_NN.mat files
HOI_LABELS = ("auto", "verb", "hoi")  # what a result list's category_id is
HOI_BASES = ("auto", "1", "0")  # a plain result table's HOI ids: official 1-based, 0-based; auto refuses 0-based-looking

"""The params schema: every bad value is refused before any work, naming the key, the value and what is
allowed; placement knobs live outside the stage sections."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import choices
from stage_support import params as P
from stage_support import schema
from tests.params_keys import file_keys, result_keys, validate_file

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, **sections) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


# library module -> {its name for the tuple: the name in pipeline.choices}
LIBRARY_CHOICES = {
    "pipeline.datasets.adapters": {"DATASETS": "DATASETS"},
    "pipeline.datasets.build": {"LABEL_MODES": "LABEL_MODES"},
    "pipeline.datasets.table": {"SPLITS": "SPLITS"},
    "pipeline.text.encoders": {"BACKENDS": "EMBED_BACKENDS", "POOLINGS": "POOLINGS"},
    "pipeline.text.prompts": {"TEMPLATE_FIELDS": "TEMPLATE_FIELDS"},
    "pipeline.model": {"POSITIONS": "CLASSIFIER_POSITIONS", "INITS": "INITS"},
    "pipeline.training.losses": {"LOSSES": "LOSSES"},
    "pipeline.training.dataset": {"LABEL_MAPPINGS": "LABEL_MAPPINGS"},
    "pipeline.training.loader": {"AUGMENT_MODES": "AUGMENT_MODES"},
    "pipeline.training.batch_augmentation": {"DECODE_PLACES": "DECODE_PLACES"},
    "pipeline.inference.detect_split": {"BACKENDS": "DETECT_BACKENDS"},
    "pipeline.placement": {"DEVICES": "DEVICES"},
    "pipeline.detection.precomputed": {"FORMATS": "PRECOMPUTED_FORMATS"},
    "pipeline.classes.coco": {"LABEL_SPACES": "LABEL_SPACES"},
    "pipeline.regions.masks": {"RULES": "PATCH_RULES"},
    "pipeline.regions.scorer": {"PATHS": "SCORE_PATHS"},
    "pipeline.results.formats": {"FORMATS": "RESULT_FORMATS"},
    "pipeline.results.mat_cache": {"OBJECT_ORDERS": "MAT_OBJECT_ORDERS"},
    "pipeline.results.detr_lists": {"HOI_LABELS": "HOI_LABELS", "OBJECT_LABELS": "LABEL_SPACES"},
}


@pytest.mark.parametrize("module", list(LIBRARY_CHOICES))
def test_the_library_checks_against_pipeline_choices_not_a_copy(module):
    """The same object, not an equal tuple: a value added to pipeline.choices reaches the library too."""
    lib = importlib.import_module(module)
    for name, source in LIBRARY_CHOICES[module].items():
        assert getattr(lib, name) is getattr(choices, source), f"{module}.{name} is not pipeline.choices.{source}"


def test_every_choice_of_the_schema_comes_from_pipeline_choices():
    def allowed(tree: dict, prefix: str):
        for key, spec in tree.items():
            if isinstance(spec, dict):
                yield from allowed(spec, f"{prefix}.{key}")
            elif spec.choices:
                yield f"{prefix}.{key}", spec.choices
    shared = [set(v) for k, v in vars(choices).items() if k.isupper()]
    spelled = [key for name, tree in [*schema.SECTIONS.items(), ("placement", schema.PLACEMENT),
                                      ("checks", schema.CHECKS)]
               for key, values in allowed(tree, name) if set(values) not in shared]
    assert spelled == []


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    nodes = list(ast.walk(ast.parse(path.read_text())))
    return ({n.module for n in nodes if isinstance(n, ast.ImportFrom)} |
            {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names})


def test_checking_params_imports_no_torch():
    code = "import sys, stage_support.params; print(sorted(m for m in sys.modules if m.startswith(('torch', 'pipeline.'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pipeline.choices']"


def test_no_import_circle_between_params_and_schema():
    """params.py checks values against schema.py; schema.py imports neither it nor the library beyond choices."""
    assert not {m for m in imports(ROOT / "stage_support" / "schema.py")
                if m.startswith(("stage_support", "pipeline")) and m != "pipeline.choices"}
    assert imports(ROOT / "pipeline" / "choices.py") == set()


@pytest.mark.parametrize("section, values, message", [
    ("train", {"lr": "fast"}, r"train.lr = 'fast': expected a number in \(0, 1.0\]"),
    ("train", {"loss": "lse-sign"}, "train.loss = 'lse-sign': expected one of lse_sign, .*did you mean 'lse_sign'"),
    ("train", {"epochs": 0}, r"train.epochs = 0: expected an integer in \[1, 10000\]"),
    ("train", {"epochs": 2.5}, r"train.epochs = 2.5: expected an integer"),
    ("train", {"max_failures": 2}, r"train.max_failures: this key moved to placement.train.max_failures"),
    ("train", {"max_failurs": 2}, r"train.max_failurs: unknown key"),
    ("prepare", {"val_fracton": 0.2}, r"prepare.val_fracton: unknown key; did you mean prepare.val_fraction\?"),
    ("demo", {"n_test": 0}, r"demo.n_test = 0: expected an integer in \[1, 1000000\]"),
    ("detect", {"backend": "mmdetection"}, r"detect.backend = 'mmdetection': .*did you mean 'mmdet'"),
    ("detect", {"mmdet": {"checkpoint": ""}}, r"detect.mmdet.checkpoint = '': expected a path or URI, or inputs/none"),
    ("detect", {"mmdet": {"test_scale": [320]}}, r"detect.mmdet.test_scale = \[320\]: expected \[width, height\]"),
    ("embed_text", {"template": "a person {verb_ed} {a_object}"},
     r"embed_text.template = .*unknown field \{verb_ed\}; did you mean \{verb\}\?"),
    ("demo", {"image_size": [160, "x"]}, r"demo.image_size\[1\] = 'x': expected an integer"),
    ("evaluate", {"classification": "yes"}, r"evaluate.classification = 'yes': expected true or false"),
    ("prepare", {"dataset": "mpi"}, r"prepare.dataset = 'mpi': expected one of hico, mpii, table, vcoco; did you mean 'mpii'"),
    ("prepare", {"table": {"label_mode": "one"}}, r"prepare.table.label_mode = 'one': expected one of multi, single"),
    ("embed_text", {"name_template": "a person {activity}"},
     r"embed_text.name_template = .*unknown field \{activity\}"),
])
def test_bad_values_are_refused_naming_key_value_and_what_is_allowed(tmp_path, section, values, message):
    path = write(tmp_path, **{section: values})
    with pytest.raises(P.ParamsError, match=message):
        P.load(section, path)


def test_every_problem_is_reported_at_once_within_milliseconds(tmp_path):
    path = write(tmp_path, train={"lr": "fast", "loss": "lse-sign", "ray_address": "auto"})
    start = time.perf_counter()
    with pytest.raises(P.ParamsError) as e:
        P.load("train", path)
    assert time.perf_counter() - start < 1.0
    text = str(e.value)
    assert "train.lr" in text and "train.loss" in text and "placement.ray_address" in text


def test_defaults_fill_absent_keys_and_placement_is_optional(tmp_path):
    path = write(tmp_path, train={"lr": 1e-4})
    p = P.load("train", path)
    assert p["lr"] == 1e-4 and p["loss"] == "lse_sign" and p["pretrained_file"] == P.NO_FILE
    where = P.placement("train", path)
    assert where["num_workers"] == 2 and where["ray_address"] == "" and where["max_failures"] == 2


def test_placement_is_checked_too(tmp_path):
    path = write(tmp_path, placement={"predict": {"device": "gpu"}, "ray_adress": "auto"})
    with pytest.raises(P.ParamsError) as e:
        P.placement("predict", path)
    assert "placement.predict.device = 'gpu'" in str(e.value)
    assert "placement.ray_adress: unknown key; did you mean placement.ray_address?" in str(e.value)


def test_missing_section_and_unknown_section(tmp_path):
    path = write(tmp_path, trian={"lr": 1e-3})
    with pytest.raises(P.ParamsError, match="has no section 'train'"):
        P.load("train", path)
    assert validate_file(path) == ["trian: unknown section; did you mean train?"]


def test_named_file_reads_the_none_sentinel_as_no_file():
    assert P.named_file("inputs/none") == "" and P.named_file("./inputs/none") == ""
    assert P.named_file("s3://b/prompts.txt") == "s3://b/prompts.txt"


def test_result_and_file_keys():
    assert "train.lr" in result_keys("train") and "train.num_workers" not in result_keys("train")
    assert "detect.mmdet.checkpoint" in file_keys("detect")
    assert set(file_keys("embed_text")) == {"embed_text.model_file", "embed_text.prompts_file"}


def test_docs_params_md_is_the_rendered_schema():
    doc = ROOT / "docs" / "params.md"
    assert doc.read_text() == schema.markdown(), "docs/params.md is stale: python -m stage_support.schema > docs/params.md"


@pytest.mark.parametrize("placement, message", [
    ({"connect_timeout_s": 0.001}, r"placement.connect_timeout_s = 0.001: expected a number in \[1, 3600\]"),
    ({"connect_timeout_s": 86400}, r"placement.connect_timeout_s = 86400: expected a number in \[1, 3600\]"),
    ({"train": {"num_workers": 100000}}, r"placement.train.num_workers = 100000: expected an integer in \[1, 4096\]"),
    ({"predict": {"batch_size": 10**7}}, r"placement.predict.batch_size = 10000000: expected an integer in"),
])
def test_durations_and_counts_are_bounded_on_both_sides(tmp_path, placement, message):
    path = write(tmp_path, placement=placement)
    with pytest.raises(P.ParamsError, match=message):
        P.placement("train" if "train" in placement else "predict", path)


def test_every_number_param_has_both_bounds():
    """A number without an upper bound lets a unit slip through (ms for s, a count for a fraction)."""
    def numbers(tree: dict, prefix: str):
        for key, spec in tree.items():
            if isinstance(spec, dict):
                yield from numbers(spec, f"{prefix}.{key}")
            elif spec.kind in ("int", "float"):
                yield f"{prefix}.{key}", spec
    unbounded = [key for name, tree in [*schema.SECTIONS.items(), ("placement", schema.PLACEMENT),
                                        ("checks", schema.CHECKS)]
                 for key, spec in numbers(tree, name)
                 if spec.high is None or (spec.low is None and not spec.positive)]
    assert unbounded == []


# --- One source for each fact: the schema's defaults and choices, and everything that repeats them -------------

def param(dotted: str) -> schema.Param:
    """The schema's Param of a dotted key (``placement.train.num_workers``, ``checks.max_reject_fraction``)."""
    first, *rest = dotted.split(".")
    node = {"placement": schema.PLACEMENT, "checks": schema.CHECKS}.get(first) or schema.SECTIONS[first]
    for part in rest:
        node = node[part]
    assert isinstance(node, schema.Param), dotted
    return node


def section(dotted: str) -> dict:
    first, *rest = dotted.split(".")
    node = {"placement": schema.PLACEMENT, "checks": schema.CHECKS}.get(first) or schema.SECTIONS[first]
    for part in rest:
        node = node[part]
    return node


# The library's dataclasses whose defaults repeat the schema's: (class, schema section, field -> key renames).
# Fields named like a key of the section must default to the schema's default.
DATACLASSES = [
    ("pipeline.model.ModelConfig", "train", {"model_name": "model"}),
    ("pipeline.placement.Placement", "placement.score_regions", {}),
    ("pipeline.placement.TrainPlacement", "placement.train", {}),
    ("pipeline.regions.pairs.PairParams", "score_regions", {}),
    ("pipeline.regions.scorer.ScoreParams", "score_regions", {}),
    ("pipeline.inference.detector_predictor.DetectorSpec", "detect.mmdet", {}),
    ("pipeline.inference.detector_predictor.DetectorSpec", "detect", {}),
    ("pipeline.inference.detect_split.PrecomputedSpec", "detect.precomputed", {}),
    ("pipeline.inference.detect_split.DetectOptions", "detect", {}),
    ("pipeline.detection.oracle.OracleConfig", "detect.oracle", {}),
    ("pipeline.results.formats.ReadOptions", "evaluate.external", {}),
    ("pipeline.cli.hoi.HOIOptions", "detect", {}),
]
# Defaults that differ on purpose, and why.
DIFFERENT_ON_PURPOSE = {
    # None = the detector config's own test size (defr detect's --detector-scale default); the stage's default
    # is the demo's small size, set in params.yaml for every run of the stage.
    ("pipeline.inference.detector_predictor.DetectorSpec", "test_scale"),
}


@pytest.mark.parametrize("dotted, where, renames", DATACLASSES, ids=[f"{c.rsplit('.', 1)[1]}-{s}" for c, s, _ in DATACLASSES])
def test_library_dataclass_defaults_are_the_schema_defaults(dotted, where, renames):
    import dataclasses

    module, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    keys = section(where)
    compared = []
    for f in dataclasses.fields(cls):
        key = renames.get(f.name, f.name)
        if (dotted, f.name) in DIFFERENT_ON_PURPOSE or not isinstance(keys.get(key), schema.Param):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if default is None and f.default is dataclasses.MISSING:
            continue  # a required field: nothing repeated
        assert default == keys[key].default, f"{dotted}.{f.name} = {default!r}, schema {where}.{key} = {keys[key].default!r}"
        compared.append(f.name)
    assert compared, f"{dotted}: no field compared with {where} (the table above is stale)"


def _defr_subcommands() -> dict:
    from pipeline.cli.commands import parser

    return parser()._subparsers._group_actions[0].choices


POOL_OPTIONS = {"device": "device", "precision": "precision", "batch_size": "batch_size", "actors": "actors",
                "cpus_per_actor": "cpus_per_actor"}
# defr option (argparse dest) -> the schema key whose default and choices it repeats, per subcommand.
DEFR_OPTIONS = {
    "detect": {**{d: f"placement.score_regions.{k}" for d, k in POOL_OPTIONS.items()},
               "detector_seed": "detect.mmdet.seed", "score_floor": "detect.score_floor",
               "max_per_image": "detect.max_per_image",
               **{k: f"score_regions.{k}" for k in ("score_threshold", "nms_threshold", "max_humans", "max_objects",
                                                    "masked_layers", "patch_rule", "score_power", "top_k")}},
    "classify": {d: f"placement.predict.{k}" for d, k in POOL_OPTIONS.items()},
    "evaluate": {**{k: f"evaluate.external.{k}" for k in ("format", "mat_object_order", "hoi_labels", "object_labels")},
                 "pr_classes": "evaluate.pr_classes", "max_reject_fraction": "checks.max_reject_fraction"},
}


@pytest.mark.parametrize("command", list(DEFR_OPTIONS))
def test_defr_options_default_to_the_schema_and_offer_its_choices(command):
    """pipeline/cli may not import stage_support (layers): its option defaults are literals, checked here."""
    actions = {a.dest: a for a in _defr_subcommands()[command]._actions}
    for dest, key in DEFR_OPTIONS[command].items():
        p = param(key)
        assert actions[dest].default == p.default, f"defr {command} --{dest.replace('_', '-')}: default " \
                                                   f"{actions[dest].default!r}, schema {key} = {p.default!r}"
        if p.choices:
            assert tuple(actions[dest].choices) == tuple(p.choices), f"defr {command} --{dest}: choices"


def test_defr_choices_are_never_spelled_out():
    """A choices= of the command line names pipeline.choices' tuples (or adds to them), never a literal list."""
    spelled = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "choices" and isinstance(node.value, (ast.Tuple, ast.List)):
                if all(isinstance(e, ast.Constant) for e in node.value.elts):
                    spelled.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert spelled == [], f"choices spelled out instead of taken from pipeline.choices: {spelled}"


def _yaml_comments(path: Path):
    """(dotted key, comment) of every ``key: value  # comment`` line of a params file (block style)."""
    import re

    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        m = re.match(r"^(\s*)([\w-]+):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if "#" in rest and not rest.split("#", 1)[0].strip().startswith(('"', "'")):
            yield ".".join(k for _, k in stack), rest.split("#", 1)[1]


def test_params_yaml_comments_list_exactly_the_allowed_values():
    """A comment that lists alternatives (``# a | b | c``) names each allowed value of its key once, in
    some order, and nothing that is not allowed: each '|'-separated part starts with one of them."""
    import re

    checked = 0
    for key, comment in _yaml_comments(ROOT / "params.yaml"):
        try:
            p = param(key)
        except (KeyError, AssertionError):
            continue
        if not p.choices or "|" not in comment:
            continue
        named = []
        for part in comment.split("|"):
            found = [t for t in re.findall(r"[\w-]+", part) if t in map(str, p.choices)]
            assert found, f"params.yaml {key}: the comment's alternative {part.strip()!r} is not one of {p.choices}"
            named.append(found[0])
        assert sorted(named) == sorted(map(str, p.choices)), f"params.yaml {key}: comment lists {named}, schema {p.choices}"
        checked += 1
    assert checked >= 20, checked  # the comments of every key with choices were found

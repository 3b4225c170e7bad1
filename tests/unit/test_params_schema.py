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
    "pipeline.training.recipe": {"AUGMENTATIONS": "AUGMENT_MODES"},
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
    ("prepare", {"dataset": "mpi"}, r"prepare.dataset = 'mpi': expected one of hico, mpii, table; did you mean 'mpii'"),
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
    assert P.validate_file(path) == ["trian: unknown section; did you mean train?"]


def test_named_file_reads_the_none_sentinel_as_no_file():
    assert P.named_file("inputs/none") == "" and P.named_file("./inputs/none") == ""
    assert P.named_file("s3://b/prompts.txt") == "s3://b/prompts.txt"


def test_result_and_file_keys():
    assert "train.lr" in P.result_keys("train") and "train.num_workers" not in P.result_keys("train")
    assert "detect.mmdet.checkpoint" in P.file_keys("detect")
    assert set(P.file_keys("embed_text")) == {"embed_text.model_file", "embed_text.prompts_file"}


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

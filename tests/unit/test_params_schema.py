"""The params schema: every bad value is refused before any work, naming the key, the value and what is
allowed; placement knobs live outside the stage sections."""
from __future__ import annotations

import time

import pytest
import yaml

from stages import params as P
from stages import schema


def write(tmp_path, **sections) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def test_schema_choices_are_the_librarys_own_lists():
    from pipeline.datasets.adapters import DATASETS
    from pipeline.datasets.build import LABEL_MODES
    from pipeline.losses import LOSSES
    from pipeline.regions.masks import RULES
    from pipeline.regions.scorer import PATHS
    from pipeline.detection.precomputed import FORMATS
    from pipeline.detection.sources import BACKENDS as DETECT_BACKENDS
    from pipeline.inference.engine import DEVICES
    from pipeline.text.encoders import BACKENDS
    from pipeline.text.prompts import TEMPLATE_FIELDS

    assert schema.LOSSES == LOSSES and schema.PATCH_RULES == RULES and schema.SCORE_PATHS == PATHS
    assert schema.EMBED_BACKENDS == BACKENDS and schema.DETECT_BACKENDS == DETECT_BACKENDS
    assert schema.TEMPLATE_FIELDS == TEMPLATE_FIELDS
    assert schema.DATASETS == DATASETS and schema.LABEL_MODES == LABEL_MODES
    assert schema.PRECOMPUTED_FORMATS == FORMATS and schema.DEVICES == DEVICES


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
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "params.md"
    assert doc.read_text() == schema.markdown(), "docs/params.md is stale: python -m stages.schema > docs/params.md"


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

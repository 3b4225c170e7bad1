"""Class prompts from the classes table: HICO templates, free-text prompts, name templates (MPII), a
prompts file, and the errors that name the param and the class."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.datasets.hico import hico_classes
from pipeline.classes.hico_vocab import hico_vocabulary
from pipeline.text.prompts import class_prompts, read_prompts_file

TEMPLATES = ("a person {verb_ing} {a_object}", "a person and {a_object}", "a photo of a person {name}")


def test_hico_prompts_from_the_classes_table():
    v = hico_vocabulary()
    p = class_prompts(hico_classes(), *TEMPLATES)
    assert len(p) == 600 and len(set(p)) == 600
    assert p[v.index("ride", "bicycle")] == "a person riding a bicycle"
    assert p[v.index("no_interaction", "airplane")] == "a person and an airplane"
    assert p[v.index("hold", "sports_ball")] == "a person holding a sports ball"


def test_free_text_prompt_name_template_and_category():
    classes = pa.table({"hoi": [0, 1, 2], "name": ["rock climbing", "feed llama", "golf"],
                        "verb": [None, "feed", None], "verb_ing": [None, "feeding", None],
                        "object": [None, "llama", None], "category": ["sports", None, "sports"],
                        "prompt": [None, None, "a golfer swinging a club"]})
    assert class_prompts(classes, *TEMPLATES) == ["a photo of a person rock climbing", "a person feeding a llama",
                                                  "a golfer swinging a club"]
    assert class_prompts(classes, TEMPLATES[0], TEMPLATES[1], "{name} ({category})")[0] == "rock climbing (sports)"


def test_template_field_a_class_lacks_names_param_and_class():
    classes = pa.table({"hoi": [0], "name": ["rock climbing"]})
    with pytest.raises(ValueError, match=r"^name_template .*\{category\}, which class 0 \('rock climbing'\)"):
        class_prompts(classes, TEMPLATES[0], TEMPLATES[1], "{name} ({category})")
    verbs = pa.table({"hoi": [0], "name": ["feed llama"], "verb": ["feed"], "object": ["llama"]})
    with pytest.raises(ValueError, match=r"^template .*\{verb_ing\}, which class 0"):
        class_prompts(verbs, *TEMPLATES)


@pytest.mark.parametrize("template", ["a person {verb_ed} {object}", "{verb} {subject}"])
def test_template_with_unknown_field_names_the_parameter(template):
    with pytest.raises(ValueError, match=r"^template .*unknown field"):
        class_prompts(hico_classes(), template, TEMPLATES[1], TEMPLATES[2])
    with pytest.raises(ValueError, match=r"^no_interaction_template .*unknown field"):
        class_prompts(hico_classes(), TEMPLATES[0], template, TEMPLATES[2])


def test_prompts_file_lines_and_json(tmp_path):
    lines = tmp_path / "p.txt"
    lines.write_text("a person riding a bike\n  a person eating pizza  \n")
    assert read_prompts_file(str(lines), 2) == ["a person riding a bike", "a person eating pizza"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["one", "two", "three"]))
    classes = pa.table({"hoi": [0, 1, 2], "name": ["a", "b", "c"]})
    assert class_prompts(classes, "", "", "", prompts_file=str(js)) == ["one", "two", "three"]


@pytest.mark.parametrize("content, expected, match", [
    ("a\nb\n", 3, r"has 2 prompts; expected 3"),
    ("a\n\nc\n", 3, r"line 2: empty prompt"),
    ('["a", "  "]', 2, r"item 2: empty prompt"),
    ('["a", 3]', 2, r"item 2: expected a string"),
    ('["a", ', 2, r"not valid JSON"),
])
def test_bad_prompts_file_names_the_parameter_and_line(tmp_path, content, expected, match):
    path = tmp_path / "prompts.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"prompts_file .*{match}"):
        read_prompts_file(str(path), expected)


def test_missing_prompts_file_names_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts_file"):
        read_prompts_file(str(tmp_path / "nope.txt"), 600)


def test_plot_groupings_follow_what_the_classes_have(tmp_path):
    import numpy as np

    from pipeline.text.embedding_plots import class_groupings, write_embedding_plots

    assert set(class_groupings(hico_classes())) == {"verb", "object"}
    mpii = pa.table({"hoi": [0, 1], "name": ["golf", "yoga"], "category": ["sports", "conditioning"]})
    assert class_groupings(mpii) == {"category": ["sports", "conditioning"]}
    own = pa.table({"hoi": [0, 1], "name": ["a", "b"], "verb": ["x", None], "object": ["y", "z"]})
    assert class_groupings(own) == {"object": ["y", "z"]}
    emb = np.eye(2, 8, dtype=np.float32)                              # 2 classes: no t-SNE, the PCA plane
    paths = write_embedding_plots(emb, {"name": ["a", "b"]}, tmp_path, "test-model")
    assert [p.name for p in paths] == ["tsne_by_name.png"] and paths[0].read_bytes()[:4] == b"\x89PNG"

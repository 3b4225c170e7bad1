"""Sweep plumbing and run naming (no Ray run here: the train stage's integration test covers Ray Train)."""
import re

import pytest

from pipeline.model import ModelConfig
from pipeline.training.launcher import loop_config
from pipeline.training.sweep import apply_overrides, grid
from pipeline.training.runs import code_fingerprint, run_name


def test_overrides_reach_model_fields_and_recipe_keys_without_touching_the_base():
    base = loop_config("images.parquet", None, ModelConfig(), lr=1e-3, loss="lse_sign")
    cfg = apply_overrides(base, {"gamma": 50, "lr": 1e-4})
    assert cfg["model"]["gamma"] == 50 and cfg["lr"] == 1e-4
    assert base["model"]["gamma"] == 100.0 and base["lr"] == 1e-3
    with pytest.raises(KeyError, match="sweep key 'gama'"):
        apply_overrides(base, {"gama": 1})


def test_grid_is_the_cartesian_product():
    assert grid({"a": [1, 2], "b": ["x", "y", "z"]})[-1] == {"a": 2, "b": "z"}
    assert len(grid({"a": [1, 2], "b": ["x", "y", "z"]})) == 6


def test_run_name_changes_with_settings_and_inputs_only():
    settings, inputs = {"recipe": {"lr": 1e-3, "epochs": 8}, "num_workers": 2}, {"images": "a1", "text": "b2"}
    # the same settings written in another key order name the same run (the resumed run is found by name)
    reordered = {"num_workers": 2, "recipe": {"epochs": 8, "lr": 1e-3}}
    assert run_name("defr", settings, inputs) == run_name("defr", reordered, {"text": "b2", "images": "a1"})
    assert run_name("defr", settings, inputs) != run_name("defr", settings | {"recipe": {"lr": 1e-4}}, inputs)
    assert run_name("defr", settings, inputs) != run_name("defr", settings, inputs | {"images": "a2"})
    assert re.fullmatch(r"defr-[0-9a-f]{8}", run_name("defr", settings, inputs))


def test_code_fingerprint_changes_with_any_library_source(tmp_path):
    """An edited loss re-runs the train stage (DVC); the new run must not resume the old, finished one."""
    (tmp_path / "losses").mkdir()
    (tmp_path / "losses" / "lse.py").write_text("GAMMA = 100\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "losses" / "lse.py").write_text("GAMMA = 50\n")
    assert code_fingerprint(tmp_path) != before
    (tmp_path / "losses" / "lse.py").write_text("GAMMA = 100\n")
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "losses" / "lse.py").rename(tmp_path / "lse.py")  # same bytes, another module
    assert code_fingerprint(tmp_path) != before
    assert len(code_fingerprint()) == 40  # the installed pipeline/ package by default

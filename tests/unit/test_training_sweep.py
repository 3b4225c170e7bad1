"""Sweep plumbing and run naming (no Ray run here: the train stage's integration test covers Ray Train)."""
import pytest

from pipeline.model import ModelConfig
from pipeline.training.launcher import loop_config
from pipeline.training.sweep import apply_overrides, grid
from pipeline.training.runs import run_name


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
    assert run_name("defr", settings, inputs) == run_name("defr", dict(settings), dict(inputs))
    assert run_name("defr", settings, inputs) != run_name("defr", settings | {"recipe": {"lr": 1e-4}}, inputs)
    assert run_name("defr", settings, inputs) != run_name("defr", settings, inputs | {"images": "a2"})
    assert run_name("defr", settings, inputs).startswith("defr-")

"""Sweep plumbing and run naming (no Ray run here: the train stage's integration test covers Ray Train)."""
import pytest

from pipeline.model import ModelConfig
from pipeline.training.launcher import loop_config
from pipeline.training.sweep import apply_overrides, grid
from stages.train import run_name


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


def test_run_name_changes_with_params_but_not_with_the_ray_address():
    p = {"run_name": "defr", "lr": 1e-3, "epochs": 8, "ray_address": ""}
    assert run_name(p, "i", "t") == run_name(p | {"ray_address": "auto"}, "i", "t")
    assert run_name(p, "i", "t") != run_name(p | {"lr": 1e-4}, "i", "t")
    assert run_name(p, "i", "t").startswith("defr-")

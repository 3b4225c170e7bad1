"""A checkpoint whose class list does not fit its classifier (599 names for 600 output rows) is refused
wherever it is loaded (predict, score_regions, defr), naming its config.json."""
from __future__ import annotations

import json

import pytest

from pipeline.classes.space import ClassInfo, ClassSpace
from pipeline.model import ModelConfig, build_model, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def short_list(tmp_path_factory):
    space = ClassSpace([ClassInfo(n) for n in ("wave", "sit", "run")])
    path = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=3,
                                            classes=space.to_list()), None, seed=1), path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["classes"] = cfg["classes"][:2]      # one name short of the classifier's rows
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_every_loader_refuses_a_class_list_that_does_not_fit(short_list):
    from pipeline.model import read_model_config

    message = f"{short_list / 'config.json'}: lists 2 classes but the model has 3 output rows"
    with pytest.raises(ValueError, match=message):
        load_checkpoint(short_list)               # predict_split and the score_regions actors load this way
    with pytest.raises(ValueError, match=message):
        read_model_config(str(short_list))        # defr detect / classify, score_regions' driver

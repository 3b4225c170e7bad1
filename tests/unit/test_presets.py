"""The paper's configurations (stage_support/presets.py): valid params, documented, and each architecture builds at
its real size (672 px, 600 HICO / 393 MPII classes) and takes one training step on CPU with batch 1."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stage_support import params as P
from stage_support import presets
from tests.params_keys import validate_file

ROOT = Path(__file__).resolve().parents[2]
BERT_DIM = 768  # bert-base-uncased hidden size (its CLS embedding)
CLASSES = {"hico": 600, "mpii": 393}


def preset_params(tmp_path: Path, name: str) -> Path:
    """params.yaml with the preset applied the way ``dvc exp run -S`` applies it (values parsed as YAML)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for arg in presets.arguments(name).split(" -S "):
        key, value = arg.removeprefix("-S ").split("=", 1)
        *path, last = key.split(".")
        section = params
        for part in path:
            section = section[part]
        assert last in section, f"{name}: {key} is not a key of params.yaml"
        section[last] = yaml.safe_load(value)
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(params))
    return out


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_valid_params_and_round_trips_through_its_command_line(tmp_path, name):
    path = preset_params(tmp_path, name)
    assert validate_file(path) == []
    loaded = yaml.safe_load(path.read_text())
    for key, value in presets.PRESETS[name][2].items():
        section, *rest = key.split(".")
        got = loaded[section]
        for part in rest:
            got = got[part]
        assert got == value, (key, got, value)


def test_docs_list_every_preset_and_unknown_names_get_a_did_you_mean():
    assert presets.markdown() in (ROOT / "docs" / "training.md").read_text(), \
        "docs/training.md is stale: paste python -m stage_support.presets"
    assert presets.gpu_markdown() in (ROOT / "docs" / "training.md").read_text(), \
        "docs/training.md is stale: paste the GPU commands of python -m stage_support.presets"
    with pytest.raises(KeyError, match="did you mean 'hico-vit-b16'"):
        presets.arguments("hico-vit-b61")


@pytest.mark.parametrize("gpus", presets.GPUS)
def test_the_paper_batch_trains_exactly_on_1_4_and_8_gpus_with_valid_placement(tmp_path, gpus):
    from pipeline.training.sampling import split_batch

    path = preset_params(tmp_path, "hico-vit-b16")
    params = yaml.safe_load(path.read_text())
    for arg in presets.gpu_arguments(gpus).split(" -S "):
        key, value = arg.removeprefix("-S ").split("=", 1)
        params["placement"]["train"][key.rsplit(".", 1)[1]] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(params))
    where = P.placement("train", path)
    assert where["use_gpu"] is True and where["num_workers"] == gpus
    split = split_batch(P.load("train", path)["global_batch"], where["num_workers"], where["micro_batch"])
    assert split.global_batch == 128 and split.micro_batch <= where["micro_batch"]


def _architectures() -> dict[tuple, list[str]]:
    """Presets grouped by what the built model depends on (backbone, text dim, classes)."""
    import open_clip

    groups: dict[tuple, list[str]] = {}
    for name, (_, _, keys) in presets.PRESETS.items():
        model = keys["train.model"]
        dim = BERT_DIM if keys["embed_text.backend"] == "transformers" else \
            open_clip.get_model_config(model)["embed_dim"]
        groups.setdefault((model, dim, CLASSES[keys["prepare.dataset"]]), []).append(name)
    return groups


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(_architectures()), ids=lambda a: f"{a[0]}-{a[1]}d-{a[2]}")
def test_each_architecture_builds_at_real_size_and_takes_a_step_on_cpu(tmp_path, arch):
    from pipeline.training.losses import make_loss
    from pipeline.model import build_model
    from stages import train

    names = _architectures()[arch]
    model_name, dim, classes = arch
    p = P.load("train", preset_params(tmp_path, names[0]))
    # random init: the test downloads nothing (the preset's "openai" weights load the same way in build_model)
    config = dataclasses.replace(train.model_config(p), pretrained="", num_classes=classes)
    text = np.random.default_rng(0).standard_normal((classes, dim)).astype(np.float32)
    torch.manual_seed(0)
    model = build_model(config, text)
    assert model.config.image_size == 672
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=0.0)
    before = model.head.weight.detach().clone()
    targets = -torch.ones(1, classes)
    targets[0, 3] = 1
    logits = model(torch.randn(1, 3, 672, 672))
    assert logits.shape == (1, classes)
    # every preset of this architecture: its own loss on the same logits, all back-propagated
    losses = [make_loss(P.load("train", preset_params(tmp_path, n))["loss"], targets)(logits, targets) for n in names]
    assert all(torch.isfinite(v) for v in losses)
    torch.stack(losses).sum().backward()
    opt.step()
    assert not torch.equal(before, model.head.weight)

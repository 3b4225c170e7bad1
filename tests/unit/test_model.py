"""DEFRClassifier: the model contract, text/random init, checkpoints, transforms and bad inputs."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.model import (ModelConfig, build_model, inference_transform, load_checkpoint, save_checkpoint)

S = 64


def _text(c=600, d=64, seed=0):
    return np.random.default_rng(seed).normal(size=(c, d)).astype(np.float32)


def test_forward_is_classify_of_the_pooled_token_before_proj():
    m = build_model(ModelConfig(image_size=S), _text()).eval()
    v = m.visual
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        assert torch.equal(m(x), m.classify(v._pool(v.transformer(v._embeds(x)))[0]))


def test_pre_proj_text_init_gives_clip_zero_shot_logits_and_zero_bias():
    t = _text()
    m = build_model(ModelConfig(image_size=S, gamma=100.0), t).eval()
    assert m.config.classifier_position == "pre_proj"
    assert torch.all(m.head.bias == 0)
    x = torch.randn(3, 3, S, S)
    with torch.no_grad():
        feat = F.normalize(m.pooled(x) @ m.visual.proj, dim=-1)
        expected = 100.0 * feat @ F.normalize(torch.from_numpy(t), dim=-1).T
        assert torch.allclose(m(x), expected, atol=1e-3)


def test_other_text_dim_uses_a_learnable_projection_and_unit_rows():
    m = build_model(ModelConfig(image_size=S), _text(d=384))
    assert m.config.classifier_position == "post_proj" and m.feature_proj is not None
    assert m.feature_proj.weight.requires_grad
    assert torch.allclose(m.head.weight.norm(dim=1), torch.ones(600), atol=1e-5)
    with pytest.raises(ValueError, match="pre_proj"):
        build_model(ModelConfig(image_size=S, classifier_position="pre_proj"), _text(d=384))


def test_random_init_differs_from_text_init_but_keeps_the_shape():
    a = build_model(ModelConfig(image_size=S, init="random", text_dim=384), None)
    b = build_model(ModelConfig(image_size=S), _text(d=384))
    assert a.head.weight.shape == b.head.weight.shape
    assert not torch.allclose(a.head.weight, b.head.weight)


def test_resnet_backbone_classifies_after_attention_pool():
    m = build_model(ModelConfig(model_name="defr-tiny-rn", image_size=S), _text()).eval()
    assert m.config.classifier_position == "post_proj"
    pooled = {}
    hook = m.visual.attnpool.register_forward_hook(lambda module, args, out: pooled.setdefault("out", out))
    with torch.no_grad():
        x = torch.randn(2, 3, S, S)
        logits = m(x)
        hook.remove()
        # the module docstring's formula, fed the attention pool's own output: gamma * <w_c, f/|f|> + b_c
        f = pooled["out"] if m.feature_proj is None else m.feature_proj(pooled["out"])
        f = torch.nn.functional.normalize(f, dim=-1) if m.config.normalize_features else f
        expected = m.config.gamma * f @ m.head.weight.T + m.head.bias
    assert logits.shape == (2, 600) and torch.allclose(logits, expected, atol=1e-4)
    assert not torch.allclose(logits[0], logits[1])   # the image matters


def test_checkpoint_round_trip_reproduces_logits(tmp_path):
    m = build_model(ModelConfig(image_size=S, metadata={"demo_only": True}), _text(d=384)).eval()
    with torch.no_grad():
        m.head.bias.normal_()
    save_checkpoint(m, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    back = load_checkpoint(tmp_path / "ck")
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        assert torch.allclose(back(x), m(x), atol=1e-6)
    assert back.config.metadata == {"demo_only": True}


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    """DVC hashes the checkpoint: the same weights must give the same file, every time and on every
    machine (safetensors' metadata map is written in a random order when it has more than one key)."""
    m = build_model(ModelConfig(image_size=S), _text(d=384))
    saved = [(save_checkpoint(m, tmp_path / f"ck{i}") / "model.safetensors").read_bytes() for i in range(8)]
    assert all(b == saved[0] for b in saved), "one model, different checkpoint bytes"


def test_pretrained_file_at_another_resolution_interpolates_positions(tmp_path):
    import open_clip

    from pipeline.assets.clip_configs import register_project_configs

    register_project_configs()
    clip = open_clip.create_model("defr-tiny-vit")  # native 224: a 14x14 grid
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    m = build_model(ModelConfig(pretrained=str(tmp_path / "clip.pt"), image_size=96), _text())
    assert m.visual.positional_embedding.shape[0] == 1 + 6 * 6
    assert torch.equal(m.visual.conv1.weight, clip.visual.conv1.weight)  # the weights did load
    assert torch.equal(m.visual.positional_embedding[0], clip.visual.positional_embedding[0])  # class token


def test_inference_transform_squashes_without_cropping():
    img = Image.new("RGB", (160, 80), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 16, 80))  # a black strip at the left edge survives (no centre crop)
    x = inference_transform(ModelConfig(image_size=S))(img)
    assert x.shape == (3, S, S)
    assert x[:, :, 0].mean() < x[:, :, -1].mean()


@pytest.mark.parametrize("shape, match", [((599, 64), "600"), ((600, 64, 1), "600")])
def test_bad_text_embeddings_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(image_size=S), np.zeros(shape, np.float32) + 1)


def test_bad_text_embeddings_dim_and_values():
    with pytest.raises(ValueError, match="dim 64.*expects 384"):
        build_model(ModelConfig(image_size=S, text_dim=384), _text())
    bad = _text()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_model(ModelConfig(image_size=S), bad)
    with pytest.raises(ValueError, match="no text embeddings"):
        build_model(ModelConfig(image_size=S), None)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="not an open_clip model"):
        build_model(ModelConfig(model_name="ViT-Q-99", image_size=S), _text())


def test_unreadable_or_mismatched_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "nothing")
    m = build_model(ModelConfig(image_size=S), _text())
    save_checkpoint(m, tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "ck")
    save_checkpoint(m, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["image_size"] = 96  # positional grid no longer fits
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit.*positional_embedding"):
        load_checkpoint(tmp_path / "ck")
    cfg["colour"] = "blue"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown model config key"):
        load_checkpoint(tmp_path / "ck")

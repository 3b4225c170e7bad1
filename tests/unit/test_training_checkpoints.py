"""Converting a state dict in the authors' layout (OpenAI CLIP ViT + a 600-row linear head)."""
import open_clip
import pytest
import torch

from pipeline.assets.clip_configs import register_project_configs
from pipeline.model import load_checkpoint
from pipeline.training.checkpoints import convert_authors_checkpoint


def _their_file(tmp_path, head_inputs="width"):
    register_project_configs()
    visual = open_clip.create_model("defr-tiny-vit", force_image_size=96).visual
    n_in = visual.proj.shape[0] if head_inputs == "width" else visual.proj.shape[1]
    head = torch.nn.Linear(n_in, 600)
    state = {f"module.visual.{k}": v for k, v in visual.state_dict().items()}
    state |= {"module.head.weight": head.weight.detach(), "module.head.bias": head.bias.detach()}
    torch.save({"epoch": 9, "state_dict": state}, tmp_path / "defr.pt")
    return visual.eval(), head, tmp_path / "defr.pt"


def test_pre_projection_head_converts_and_reloads(tmp_path):
    visual, head, path = _their_file(tmp_path)
    model = convert_authors_checkpoint(path, tmp_path / "out", model_name="defr-tiny-vit", gamma=100.0)
    assert model.config.classifier_position == "pre_proj" and model.config.image_size == 96
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        pooled = visual._pool(visual.transformer(visual._embeds(x)))[0]
        norm = (pooled @ visual.proj).norm(dim=-1, keepdim=True)
        expected = 100.0 * (pooled @ head.weight.T) / norm + head.bias
        assert torch.allclose(load_checkpoint(tmp_path / "out")(x), expected, atol=1e-3)


def test_post_projection_head_and_wrong_backbone(tmp_path):
    _, _, path = _their_file(tmp_path, head_inputs="embed")
    assert convert_authors_checkpoint(path, tmp_path / "o", model_name="defr-tiny-vit").config.image_size == 96
    with pytest.raises(ValueError, match="does not fit ViT-B-32"):
        convert_authors_checkpoint(path, tmp_path / "o2", model_name="ViT-B-32")


def test_file_without_a_600_row_head(tmp_path):
    torch.save({"w": torch.zeros(3, 3)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="600-row linear layer"):
        convert_authors_checkpoint(tmp_path / "x.pt", tmp_path / "o")
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="weights-only"):
        convert_authors_checkpoint(tmp_path / "y.pt", tmp_path / "o")

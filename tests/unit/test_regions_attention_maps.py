"""Fig. 4 attention maps: the masked map is zero outside the pair's patches; the PNG is written."""
import numpy as np
import torch
from PIL import Image

from pipeline.attention_maps import save_attention_map
from pipeline.model import ModelConfig, build_model, inference_transform
from pipeline.regions.masks import pair_coverage


def test_masked_attention_is_zero_outside_the_boxes(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (128, 160, 3), dtype=np.uint8))
    human, obj = [10, 20, 60, 120], [90, 40, 150, 90]
    unmasked, masked = save_attention_map(model, inference_transform(model.config), image, human, obj,
                                          tmp_path / "a.png", "test")
    keep = pair_coverage(np.array([human], float), np.array([obj], float), np.array([160, 128]), (14, 14))[0]
    assert masked.shape == unmasked.shape == (14, 14)
    assert (masked.reshape(-1)[~keep] == 0).all() and (masked.reshape(-1)[keep] > 0).all()
    assert (unmasked > 0).all() and 0.5 < unmasked.sum() <= 1 + 1e-5 and masked.sum() <= 1 + 1e-5
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"

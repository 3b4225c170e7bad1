"""Fig. 4 attention maps from the scoring pass: the masked map is the top pair's, zero outside its boxes'
patches; only the images asked for get maps; the PNG is written."""
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.inference.attention_maps import draw
from pipeline.model import ModelConfig, build_model, inference_transform
from pipeline.regions.masks import pair_coverage
from pipeline.regions.pairs import PairParams, make_pairs
from pipeline.regions.scorer import RegionScorer, ScoreParams

HUMAN, DOG, HORSE = [10, 20, 60, 120], [90, 40, 150, 90], [70, 5, 100, 30]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None).eval()


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (128, 160, 3), dtype=np.uint8))


def _pairs(image_id: int):
    # person, dog (COCO-80 16), horse (17): two pairs
    return make_pairs(np.array([HUMAN, DOG, HORSE], np.float32), np.array([0, 16, 17]), np.array([0.9, 0.8, 0.7]),
                      160, 128, PairParams(), image_id)


def _score(model, ids, attend, layers=1, path="shared_prefix"):
    images = [_image(i) for i in ids]
    x = torch.stack([inference_transform(model.config)(im) for im in images])
    scorer = RegionScorer(model, ScoreParams(masked_layers=layers, top_k=5, path=path))
    return scorer.score_with_attention(ids, x, [_pairs(i) for i in ids], [(160.0, 128.0)] * len(ids), attend)


@pytest.mark.parametrize("layers", [1, 2])
def test_masked_attention_is_the_top_pairs_and_zero_outside_its_boxes(model, tmp_path, layers):
    table, maps = _score(model, [7], [7], layers)
    assert table.equals(_score(model, [7], [], layers)[0])   # asking for maps changes no score
    unmasked, masked = maps[7]
    top = table.slice(0, 1).to_pylist()[0]
    keep = pair_coverage(np.array([top["human_box"]], float), np.array([top["object_box"]], float),
                         np.array([160, 128]), (14, 14))[0]
    assert masked.shape == unmasked.shape == (14, 14)
    assert (masked.reshape(-1)[~keep] == 0).all() and (masked.reshape(-1)[keep] > 0).all()
    assert (unmasked > 0).all() and 0.5 < unmasked.sum() <= 1 + 1e-5 and masked.sum() <= 1 + 1e-5
    draw(_image(7), top["human_box"], top["object_box"], unmasked, masked, tmp_path / "a.png", "test")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_only_the_images_asked_get_maps_the_same_as_alone(model):
    _, maps = _score(model, [1, 2, 3], [2])
    assert list(maps) == [2]
    _, alone = _score(model, [2], [2])
    for batched, single in zip(maps[2], alone[2]):
        np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-7)


def test_the_reference_path_draws_the_same_maps(model):
    table, maps = _score(model, [1, 2], [1, 2], path="naive")
    shared_table, shared = _score(model, [1, 2], [1, 2])
    assert table["hoi"].to_pylist() == shared_table["hoi"].to_pylist() and list(maps) == list(shared) == [1, 2]
    for i in (1, 2):
        for a, b in zip(maps[i], shared[i]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

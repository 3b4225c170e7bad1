"""Masked regional scoring: exactness of the mask, shared-prefix == naive, whole-image box, the authors' bug."""
import numpy as np
import pytest
import torch

from pipeline.model import ModelConfig, build_model
from pipeline.regions import masked_vit as mv
from pipeline.regions.masks import cls_mask_row, full_mask, pair_coverage

S = 224
HUMANS = np.array([[0, 0, 100, 120], [50, 60, 200, 220], [10, 10, 30, 30], [0, 0, 224, 224]], float)
OBJECTS = np.array([[120, 120, 224, 224], [0, 0, 40, 40], [100, 0, 224, 100], [5, 5, 20, 20]], float)
PAIR_IMAGE = torch.tensor([0, 1, 1, 0])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig(model_name="defr-tiny-vit", init="random"), None).eval()


@pytest.fixture(scope="module")
def vit_b32():
    torch.manual_seed(0)
    return build_model(ModelConfig(model_name="ViT-B-32", init="random"), None).eval()


def inputs(model, dtype, n_images=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, 3, S, S, generator=g, dtype=dtype)
    keep = pair_coverage(HUMANS, OBJECTS, np.array([S, S]), model.visual.grid_size)
    return images, keep, cls_mask_row(keep, dtype)


def cast(model, dtype):
    return model.to(dtype)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_prefix_equals_naive_tiny(tiny, layers, dtype):
    model = cast(tiny, dtype)
    images, _, rows = inputs(model, dtype)
    with torch.inference_mode():
        naive = mv.naive_logits(model.visual, model.classify, images, PAIR_IMAGE, rows, layers)
        shared = mv.shared_prefix_logits(model.visual, model.classify, images, PAIR_IMAGE, rows, layers)
    assert naive.shape == (4, 600)
    atol = 1e-5 if dtype == torch.float64 else 1e-4  # logits are gamma (100) x a cosine
    torch.testing.assert_close(shared, naive, atol=atol, rtol=0)
    assert not torch.allclose(shared[0], shared[3])  # different masks, different logits


@pytest.mark.parametrize("layers", [1, 2])
def test_shared_prefix_equals_naive_vit_b32_random(vit_b32, layers):
    model = cast(vit_b32, torch.float64)
    try:
        images, _, rows = inputs(model, torch.float64)
        with torch.inference_mode():
            naive = mv.naive_logits(model.visual, model.classify, images, PAIR_IMAGE, rows, layers)
            shared = mv.shared_prefix_logits(model.visual, model.classify, images, PAIR_IMAGE, rows, layers)
        torch.testing.assert_close(shared, naive, atol=1e-5, rtol=0)
    finally:
        cast(vit_b32, torch.float32)


def test_shared_prefix_equals_naive_vit_b32_float32(vit_b32):
    images, _, rows = inputs(vit_b32, torch.float32)
    with torch.inference_mode():
        naive = mv.naive_logits(vit_b32.visual, vit_b32.classify, images, PAIR_IMAGE, rows, 1)
        shared = mv.shared_prefix_logits(vit_b32.visual, vit_b32.classify, images, PAIR_IMAGE, rows, 1)
    torch.testing.assert_close(shared, naive, atol=1e-4, rtol=0)  # float32 over 12 blocks (measured 9e-6)


def perturb(tokens, patch_ids, seed=2):
    g = torch.Generator().manual_seed(seed)
    out = tokens.clone()
    out[:, 1 + patch_ids] += 3.0 * torch.randn(out[:, 1 + patch_ids].shape, generator=g, dtype=out.dtype)
    return out


def outside_and_inside_effect(model, run_last_block, dtype=torch.float64):
    """Max logit change when every patch outside pair 0's boxes changes, and when one inside does."""
    images, keep, rows = inputs(model, dtype, n_images=1)
    keep0 = keep[0]
    with torch.inference_mode():
        tokens = mv.prefix_tokens(model.visual, images, 1)
        base = run_last_block(model, tokens, rows[:1])
        outside = run_last_block(model, perturb(tokens, np.flatnonzero(~keep0)), rows[:1])
        inside = run_last_block(model, perturb(tokens, np.flatnonzero(keep0)[:1]), rows[:1])
    return (outside - base).abs().max().item(), (inside - base).abs().max().item()


def shared_last_block(model, tokens, rows):
    cls = mv.masked_tail(model.visual, tokens, torch.zeros(1, dtype=torch.long), rows, 1)
    return model.classify(model.visual._pool(cls)[0])


def open_clip_last_block(mask_of):
    """The last block run by open_clip itself with the mask ``mask_of(rows)``."""
    def run(model, tokens, rows):
        x = model.visual.transformer.resblocks[-1](tokens, attn_mask=mask_of(rows))
        return model.classify(model.visual._pool(x)[0])
    return run


@pytest.mark.parametrize("path", ["shared_prefix", "open_clip_block"])
def test_patches_outside_the_boxes_have_no_influence(tiny, path):
    model = cast(tiny, torch.float64)
    run = shared_last_block if path == "shared_prefix" else open_clip_last_block(lambda r: full_mask(r)[0])
    outside, inside = outside_and_inside_effect(model, run)
    assert outside < 1e-9
    assert inside > 1e-3


def test_the_authors_float_cast_mask_fails_the_exactness_test(tiny):
    """A boolean 'blocked' mask cast to float adds +1.0 to blocked logits instead of -inf: no masking.

    Both forms of the bug: the cast done by hand, and a bool mask given to open_clip's
    ResidualAttentionBlock, which casts ``attn_mask`` to the activations' dtype itself.
    """
    model = cast(tiny, torch.float64)

    def blocked(rows):
        return full_mask(rows)[0].isinf()

    for mask_of in (lambda r: blocked(r).to(torch.float64), blocked):
        outside, _ = outside_and_inside_effect(model, open_clip_last_block(mask_of))
        assert outside > 1e-3


@pytest.mark.parametrize("layers", [1, 2])
def test_whole_image_box_reproduces_the_image_logits(tiny, layers):
    model = cast(tiny, torch.float64)
    images, _, _ = inputs(model, torch.float64)
    whole = np.array([[0, 0, 640, 480]], float)
    rows = cls_mask_row(pair_coverage(whole, whole, np.array([640, 480]), model.visual.grid_size), torch.float64)
    assert (rows == 0).all()
    rows = rows.expand(2, -1)
    with torch.inference_mode():
        image_logits = model(images)
        shared = mv.shared_prefix_logits(model.visual, model.classify, images, torch.arange(2), rows, layers)
    torch.testing.assert_close(shared, image_logits, atol=1e-9, rtol=0)


def test_non_vit_and_bad_layers_raise(tiny):
    with pytest.raises(ValueError, match="masked_layers"):
        mv.check_visual(tiny.visual, 4)
    rn = build_model(ModelConfig(model_name="defr-tiny-rn", init="random"), None)
    with pytest.raises(ValueError, match="ViT backbone"):
        mv.check_visual(rn.visual, 1)

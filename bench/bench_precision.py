"""What bf16 autocast changes in regional scoring and image scores, against fp32 (pipeline/precision.py).

    python -m bench precision            (CPU, bf16 autocast works there; ViT-B/32 random weights, 224 px)

Scores the same pairs of the same images with ``RegionScorer(precision="fp32")`` and ``"bf16"`` and prints,
per image, the overlap of the top-k (pair, class) rows, whether fp32's best row is in bf16's top-k, and the
largest score difference; then the image-level logits (the predict path: backbone under autocast, head in
fp32). The figures docs/regional_scoring.md states come from here and tests/unit/test_regions_precision.py.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc
import torch

from pipeline.classes.space import ClassSpace
from pipeline.model import ModelConfig, build_model
from pipeline.precision import autocast, full_precision
from pipeline.regions.pairs import PairParams, make_pairs
from pipeline.regions.scorer import RegionScorer, ScoreParams

TOP_K = 10


def scenes(n: int, seed: int = 0, size: int = 224):
    """``n`` noise images, each with three people, a bicycle, a horse and a cup at random places and scores."""
    g = np.random.default_rng(seed)
    pairs, sizes = [], []
    for i in range(n):
        w, h = 640.0, 427.0
        xy = g.uniform(0, [w - 80, h - 80], (6, 2))
        boxes = np.concatenate([xy, np.minimum(xy + g.uniform(60, 300, (6, 2)), [w, h])], 1)
        pairs.append(make_pairs(boxes, np.array([0, 0, 0, 1, 17, 41]), g.uniform(0.3, 1.0, 6), w, h, PairParams(), i))
        sizes.append((w, h))
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)), pairs, sizes


def compare(model_name: str, n_images: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_name=model_name, init="random"), None).eval()
    images, pairs, sizes = scenes(n_images)
    ids = list(range(n_images))
    out = {p: RegionScorer(model, ScoreParams(top_k=TOP_K), ClassSpace.hico(), precision=p).score(ids, images, pairs, sizes)
           for p in ("fp32", "bf16")}
    overlaps, best_kept, diffs = [], [], []
    for i in ids:
        rows = {p: t.filter(pc.equal(t["image_id"], i)).to_pylist() for p, t in out.items()}
        ref, low = ({(tuple(r["human_box"]), tuple(r["object_box"]), r["hoi"]): r["score"] for r in rows[p]}
                    for p in ("fp32", "bf16"))
        both = ref.keys() & low.keys()
        overlaps.append(len(both) / len(ref))
        best_kept.append(next(iter(ref)) in low)
        diffs.append(max(abs(ref[k] - low[k]) for k in both))
    print(f"{model_name}, {n_images} images, {sum(len(p) for p in pairs)} pairs: top-{TOP_K} overlap "
          f"min {min(overlaps):.2f} mean {np.mean(overlaps):.2f}; fp32's best row in bf16's top-{TOP_K}: "
          f"{sum(best_kept)}/{n_images}; max |score difference| {max(diffs):.4f}")
    head = full_precision(model.classify)
    with torch.inference_mode():
        ref = model(images)
        with autocast("cpu", "bf16"):
            low = head(model.pooled(images))
    same_top = (ref.topk(5).indices == low.topk(5).indices).all(1).float().mean().item()
    print(f"  image logits: max |difference| {(ref - low).abs().max().item():.3f} (logit std "
          f"{ref.std().item():.2f}); same top-5 classes in order: {same_top:.2f} of the images", flush=True)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    print(f"torch {torch.__version__}, CPU, bf16 autocast against fp32")
    compare("defr-tiny-vit", 8)
    compare("ViT-B-32", 8)


if __name__ == "__main__":
    main()

"""Regional scoring cost per image: shared-prefix vs naive, as ratios to one unmasked image forward.

    python -m bench score_regions            (CPU; ViT-B/32 random weights at 224 and 672 px)

For P pairs on one image, ``shared`` runs the first n - L blocks once and P masked CLS queries in the
last L blocks; ``naive`` runs P full masked forwards. Figures are ratios to an unmasked forward of the
same image measured in the same run (goal: P <= 50 within 1.5x at L = 1).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from pipeline.model import ModelConfig, build_model
from pipeline.regions import masked_vit as mv
from pipeline.regions.masks import cls_mask_row, pair_coverage

PAIRS = (1, 10, 50)
SIZES = (224, 672)


def _clock():
    """Process CPU time with one torch thread: insensitive to other jobs sharing the cores (wall time
    on a busy 2-core machine varied 3x between runs); wall time with several threads."""
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


def _interleaved(fns: dict, rounds: int) -> dict:
    """Fastest run of each function over ``rounds`` round-robin rounds (after one warm-up each).

    Round-robin puts every method under the same background load; the minimum is the run least
    disturbed by other jobs on the machine.
    """
    best = {}
    for name, fn in fns.items():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = _clock()
            fn()
            best[name] = min(best.get(name, float("inf")), _clock() - start)
    return best


def _rows(model, n_pairs: int, size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    def boxes():
        xy = rng.uniform(0, size * 0.6, (n_pairs, 2))
        wh = rng.uniform(size * 0.1, size * 0.4, (n_pairs, 2))
        return np.concatenate([xy, xy + wh], axis=1)
    keep = pair_coverage(boxes(), boxes(), np.array([size, size]), model.visual.grid_size)
    return cls_mask_row(keep)


def bench_size(size: int, naive_max_pairs: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_name="ViT-B-32", image_size=size, init="random"), None).eval()
    image = torch.randn(1, 3, size, size)
    v, head = model.visual, model.classify
    rows_out, bases = [], []
    with torch.inference_mode():
        for p in PAIRS:
            rows, idx = _rows(model, p, size), torch.zeros(p, dtype=torch.long)
            t = _interleaved({
                "base": lambda: model(image),
                "s1": lambda: mv.shared_prefix_logits(v, head, image, idx, rows, 1),
                "s2": lambda: mv.shared_prefix_logits(v, head, image, idx, rows, 2)}, rounds=5)
            n1 = None
            if p <= naive_max_pairs:
                start = _clock()
                mv.naive_logits(v, head, image, idx, rows, 1)
                n1 = _clock() - start
            bases.append(t["base"])
            rows_out.append((p, t["s1"], t["s2"], n1))
    # The baseline of every row is the fastest unmasked forward of the whole run (conservative ratios).
    base = min(bases)
    print(f"ViT-B-32 @ {size}: unmasked forward {base * 1e3:.1f} ms/image (= 1.00x)")
    print(f"{'pairs':>6} {'shared L=1':>11} {'shared L=2':>11} {'naive L=1':>10}")
    for p, s1, s2, n1 in rows_out:
        naive = f"{n1 / base:9.2f}x" if n1 is not None else f"{'(skipped)':>10}"
        print(f"{p:>6} {s1 / base:10.2f}x {s2 / base:10.2f}x {naive}", flush=True)


def main() -> None:
    # One thread by default: steadier on a shared machine; BENCH_THREADS=n to change.
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    clock = "process CPU time" if torch.get_num_threads() == 1 else "wall time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, {clock}")
    # Naive at 672 x 50 pairs is ~50 forwards; BENCH_FULL=1 runs it, else it stops at 10 pairs there.
    full = os.environ.get("BENCH_FULL") == "1"
    bench_size(224, naive_max_pairs=50)
    bench_size(672, naive_max_pairs=50 if full else 10)


if __name__ == "__main__":
    main()

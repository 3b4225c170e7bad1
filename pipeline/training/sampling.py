"""Class over-sampling (every class with positives seen >= N times per epoch) and sharding over workers."""
from __future__ import annotations

import numpy as np


def oversample(targets: np.ndarray, min_per_class: int, seed: int) -> np.ndarray:
    """Shuffled row indices of one epoch: every row once, plus repeats of random positive rows of each
    class with fewer than ``min_per_class`` positives until it has that many (classes without positives
    cannot be sampled and are left alone)."""
    rng = np.random.default_rng(seed)
    positive = targets > 0
    counts = positive.sum(axis=0)
    extra = [rng.choice(np.flatnonzero(positive[:, c]), size=int(min_per_class - counts[c]), replace=True)
             for c in np.flatnonzero((counts > 0) & (counts < min_per_class))]
    indices = np.concatenate([np.arange(len(targets)), *extra]) if extra else np.arange(len(targets))
    return rng.permutation(indices)


def shard(indices: np.ndarray, rank: int, world: int, multiple: int = 1) -> np.ndarray:
    """This worker's share; the list is padded (wrapping around) so every worker gets the same number of
    samples, a multiple of ``multiple``, which keeps DDP's collective calls in step."""
    per = -(-len(indices) // world)
    per = -(-per // multiple) * multiple
    padded = np.resize(indices, per * world)
    return padded[rank::world]

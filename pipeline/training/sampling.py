"""What one optimizer step trains: the global batch split over workers, micro-batches and accumulation; class
over-sampling; each worker's share of an epoch and the seed of every sample's random draws."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Odd, so position -> seed is a bijection modulo 2**64: no two samples of an epoch share their draws.
_SPREAD = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class BatchSplit:
    """``workers`` x ``micro_batch`` x ``accumulation`` images: the global batch of one optimizer step."""

    workers: int
    micro_batch: int
    accumulation: int

    @property
    def per_worker(self) -> int:
        return self.micro_batch * self.accumulation

    @property
    def global_batch(self) -> int:
        return self.workers * self.per_worker

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.workers} worker(s) x {self.micro_batch} images x "
                f"{self.accumulation} accumulated step(s)")


def split_batch(global_batch: int, workers: int, micro_cap: int) -> BatchSplit:
    """The split that trains exactly ``global_batch`` images per optimizer step on ``workers`` workers: each
    worker takes ``global_batch / workers`` images in the fewest micro-batches of at most ``micro_cap`` images
    (the largest divisor of its share up to the cap: every micro-batch full, so accumulated steps equal one
    large step).

    Raises:
        ValueError: ``global_batch`` does not divide by ``workers``; names the nearest valid batches and
            worker counts.
    """
    if global_batch % workers:
        below, above = global_batch // workers * workers, (global_batch // workers + 1) * workers
        fewer = max(d for d in range(1, workers) if global_batch % d == 0)
        more = next((d for d in range(workers + 1, global_batch + 1) if global_batch % d == 0), None)
        batches = " or ".join(str(b) for b in (below, above) if b > 0)
        raise ValueError(
            f"train.global_batch = {global_batch} does not split evenly over placement.train.num_workers = "
            f"{workers} (each worker trains the same number of images per step): nearest valid "
            f"train.global_batch {batches}, or placement.train.num_workers {fewer}" + (f" or {more}" if more else ""))
    per_worker = global_batch // workers
    micro = max(d for d in range(1, min(per_worker, micro_cap) + 1) if per_worker % d == 0)
    return BatchSplit(workers, micro, per_worker // micro)


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


def steps_per_epoch(targets: np.ndarray, min_per_class: int, split: BatchSplit) -> int:
    """Optimizer steps of one epoch (its over-sampled length, which no seed changes, in whole global batches)."""
    return -(-len(oversample(targets, min_per_class, 0)) // split.global_batch)


def epoch_samples(targets: np.ndarray, min_per_class: int, seed: int, epoch: int, split: BatchSplit, rank: int,
                  start_step: int = 0) -> np.ndarray:
    """uint64 [n, 2]: (row, draw seed) of each sample worker ``rank`` trains in ``epoch``, from optimizer step
    ``start_step`` on.

    The epoch's order (:func:`oversample`, shuffled by seed and epoch) is padded, wrapping around, to whole
    global batches; step k trains positions [k G, (k + 1) G) of it, worker r the positions = r mod workers.
    A sample's crop, flip and jitter are drawn from its own seed, a function of (seed, epoch, position): the
    same for any number of workers or micro-batch size, and the rest of an epoch cut at a step is the same
    whatever came before (no generator state to save).
    """
    order = oversample(targets, min_per_class, seed + epoch)
    total = -(-len(order) // split.global_batch) * split.global_batch
    positions = np.arange(rank, total, split.workers, dtype=np.uint64)[start_step * split.per_worker:]
    base = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):  # wrapping modulo 2**64 is the point
        seeds = base + positions * np.uint64(_SPREAD)
    return np.stack([order[(positions % np.uint64(len(order))).astype(np.int64)].astype(np.uint64), seeds], 1)


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of what one worker draws in one optimizer step besides the samples (dropout, if a model has
    any): a resumed step draws what the uncut one drew."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1, np.uint64)[0])

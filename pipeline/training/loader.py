"""The input pipeline of one training worker: its datasets and DataLoaders, built once per run.

The loader processes live for the whole run (``persistent_workers``) and each keeps ``PREFETCH`` batches
ready; an epoch only hands the training sampler its keys (:class:`Samples`). How many processes: a GPU
node's cores per GPU by default (:func:`loader_processes`), since at 672 px the loader side of the batch
path decodes about 415 images/s per core and a GPU trains ViT-B/16 at hundreds (docs/performance.md).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from pipeline.choices import AUGMENT_MODES
from pipeline.datasets.shards import ShardReader
from pipeline.model import ModelConfig
from pipeline.training.augment import train_transform
from pipeline.training.batch_augmentation import BatchAugmentation, CropReader, collate_crops, read_bytes
from pipeline.training.dataset import ImageDataset, load_image

PREFETCH = 4  # batches each loader process prepares ahead of the training step
MAX_AUTO = 8  # loader processes ``auto`` gives one worker at most (each holds a torch import: ~300 MB)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_processes(setting: int | str, cpus_per_worker: float, cores_per_gpu: float | None = None) -> int:
    """DataLoader processes of one worker: ``setting`` when it is a number. ``auto``: the CPUs the worker can
    use, but one (the training process): ``cpus_per_worker``, or on a GPU node its node's cores per GPU
    (``cores_per_gpu``) when that is more; at most ``MAX_AUTO`` and the CPUs this process may run on."""
    if setting != "auto":
        return int(setting)
    cpus = max(float(cpus_per_worker), float(cores_per_gpu or 0))
    return max(0, min(int(cpus), usable_cpus(), MAX_AUTO + 1) - 1)


class Samples(torch.utils.data.Sampler):
    """The training loader's sampler: the (row, draw seed) keys of the current epoch
    (:func:`pipeline.training.sampling.epoch_samples`), replaced each epoch while the loader's processes stay."""

    def __init__(self):
        self.keys: list[tuple[int, int]] = []

    def set(self, keys: np.ndarray) -> None:
        self.keys = [tuple(k) for k in keys.tolist()]

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def make_loader(dataset, batch_size: int, processes: int, collate=None, sampler=None) -> torch.utils.data.DataLoader:
    """A DataLoader whose processes (if any) persist across epochs, each ``PREFETCH`` batches ahead; its own
    generator, so starting an epoch draws nothing from torch's global one (every draw is seeded per sample)."""
    ahead = {"persistent_workers": True, "prefetch_factor": PREFETCH} if processes else {}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=processes,
                                       collate_fn=collate, pin_memory=torch.cuda.is_available(),
                                       generator=torch.Generator(), **ahead)


def train_data(uris: list[str], targets: np.ndarray, mconf: ModelConfig, cfg: dict[str, Any],
               device: torch.device):
    """(dataset, collate, on-device augmentation or None) of the training images, by ``cfg["augment"]``.

    ``batch``: the loader decodes and crops (:class:`CropReader`, which also draws each image's flip and
    jitter), the training device resizes, flips, jitters and normalises whole batches
    (:class:`BatchAugmentation`). ``pil``: the per-image PIL transform, all in the loader. ``auto`` (default):
    ``batch`` on CUDA, ``pil`` on CPU (measured: ``python -m bench loader``, docs/performance.md). Either way
    the dataset takes (row, seed) keys: a sample's draws are a function of its seed. With ``cfg["shards"]``
    (``placement.train.shards``) the bytes come from that pack (:class:`ShardReader`), the same as the files'.
    """
    shards = ShardReader(cfg["shards"]) if cfg.get("shards") else None
    augment = cfg.get("augment", "auto")
    if augment not in AUGMENT_MODES:
        raise ValueError(f"train.augment {augment!r}: expected one of {AUGMENT_MODES}")
    if augment == "auto":
        augment = "batch" if device.type == "cuda" else "pil"
    if augment == "pil":
        transform = train_transform(mconf, cfg["crop_scale"], cfg["jitter"])
        return ImageDataset(uris, targets, transform, read=shards.image if shards else load_image), None, None
    reader = CropReader(mconf.image_size, cfg["crop_scale"], cfg.get("decode", "loader"))
    return (ImageDataset(uris, targets, reader, read=shards.read if shards else read_bytes), collate_crops,
            BatchAugmentation(mconf.image_size, mconf.mean, mconf.std, cfg["jitter"]))

"""Where work runs on Ray: ``params.yaml placement.<stage>`` as typed values (never part of a result's identity).

Two kinds of work, two shapes: the inference pools (predict, detect, score_regions, ``defr``) run one
predictor class in a pool of actors (:class:`Placement`), training runs Ray Train workers
(:class:`TrainPlacement`). Both are built the same way from the stage's params section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.choices import DEVICES, PRECISIONS


class _FromParams:
    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """From a ``placement.<stage>`` params section plus ``ray_address`` (keys that are not fields of
        this kind of placement are ignored: the section is shared by both kinds)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Placement(_FromParams):
    """Where and how fast a predictor runs (params.yaml ``placement.<stage>`` plus ``ray_address``).

    Attributes:
        batch_size: images per predictor call (and per Ray block).
        actors: CPU actors when no GPU is used; with GPUs one actor per GPU the cluster has or can add
            (this caps the pool where an autoscaler node type has no limit).
        cpus_per_actor: CPUs, torch threads and decode threads of each actor.
        device: ``auto`` (GPUs when there are any), ``cpu`` or ``cuda``.
        ray_address: the cluster to join; "" = ``RAY_ADDRESS`` or a local Ray.
        connect_timeout_s: how long joining the cluster may take (None: ``init_ray``'s default).
        precision: the DEFR classifier's autocast (:mod:`pipeline.precision`): ``auto`` = bf16 on CUDA,
            fp32 on CPU; ``bf16`` or ``fp32`` forced (a detector always runs fp32).
    """

    batch_size: int = 8
    actors: int = 1
    cpus_per_actor: float = 1
    device: str = "auto"
    ray_address: str = ""
    connect_timeout_s: float | None = None
    precision: str = "auto"

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"placement device {self.device!r}: expected one of {DEVICES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"placement precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.batch_size < 1 or self.actors < 1 or self.cpus_per_actor <= 0:
            raise ValueError(f"placement {self}: batch_size and actors must be >= 1, cpus_per_actor > 0")


@dataclass
class TrainPlacement(_FromParams):
    """Where and how fast training runs: never part of the result's identity for DVC, but ``num_workers``,
    ``micro_batch`` and ``precision`` change the arithmetic (the order of floating-point sums, bf16) and so
    name a different Ray Train run (``pipeline.training.runs``).

    ``micro_batch`` is a memory matter: the most images one device takes per forward pass; the global batch
    (``train.global_batch``) is what trains, reached by accumulation (``pipeline.training.sampling``).
    """

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1
    micro_batch: int = 32
    precision: str = "auto"
    compile: bool = False
    loader_workers: int | str = "auto"
    decode: str = "loader"
    shards: str = ""
    max_failures: int = 2
    storage_path: str = "runs"
    shared_storage: list[str] = field(default_factory=list)
    run_name: str = "defr"
    sweep_concurrency: int = 1

"""The predictor protocol and the one pool that runs a predictor over images, in-process or on Ray Data.

A predictor is a class whose ``__init__(**kwargs, device=...)`` loads its model once and whose
``__call__(items, rows)`` takes a batch of decoded images (``items``, each the output of its optional
``prepare(image, row)``, run in the decode threads; the RGB PIL image otherwise) and their input rows
(dicts), and returns a pyarrow table with one row per image, of the columns in its ``schema``. Ray's
batch-inference pattern: the same class runs in a plain loop (a handful of images, no Ray) or under
``map_batches(..., compute=ActorPoolStrategy(size=n))``.

The pool does what every caller needs once: it decodes each image with
:func:`pipeline.datasets.images.read_rgb` (checked against ``width`` / ``height`` when the rows have them) in
a few threads per actor, turns an unreadable image into a reject row with the reason instead of failing
the batch, and places one actor per GPU (``device: auto`` on a cluster with GPUs or whose autoscaler can
add GPU nodes, or ``cuda``: :func:`pool_size`), else
``actors`` CPU actors of ``cpus_per_actor`` CPUs (torch threads set to match, so actors do not
oversubscribe the cores). Decoding sits in the actor, so it scales with the pool and the object store
carries file names in and results out, never pixels.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from pipeline.datasets.images import ImageError, read_rgb
from pipeline.placement import Placement

log = logging.getLogger(__name__)
# Up to this many images run in-process (no Ray start-up, about 10 s here) unless Ray is asked for.
LOCAL_LIMIT = 32


@dataclass
class SplitResult:
    """What a split runner (predict, detect, score_regions) hands its stage to write: the table, its
    REJECTS, the metadata to store with the table, and the summary lines to print."""

    table: pa.Table
    rejects: pa.Table
    meta: dict
    summary: list[str]


class Predictor(Protocol):
    """What the pool runs (see the module docstring)."""

    schema: pa.Schema

    def __call__(self, items: list[Any], rows: list[dict]) -> pa.Table: ...


@dataclass
class PoolRun:
    """What a run returns.

    Attributes:
        table: one row per usable image: ``image_id`` and the predictor's columns, sorted by image_id.
        rejects: (uri, image_id, reason) of every image that could not be read.
        info: mode (in-process / ray), actors, device, seconds.
    """

    table: pa.Table
    rejects: list[tuple[str, str, str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class PoolWorker:
    """One actor of the pool (or the in-process loop): decodes a batch, runs the predictor on the images
    that could be read, returns one row per input row: ``image_id``, the predictor's columns (null for
    an unreadable image) and ``problem`` (the reason, or null)."""

    def __init__(self, predictor: type, kwargs: dict, device: str, threads: float | None, upright: bool = False):
        if threads:
            import torch

            torch.set_num_threads(max(1, int(threads)))
        self.predictor = predictor(**kwargs, device=device)
        self.upright = upright
        # PIL decoding and resizing release the GIL: a few threads overlap them within a batch.
        self.decoders = ThreadPoolExecutor(max_workers=max(2, int(threads or os.cpu_count() or 2)))

    def _load(self, row: dict) -> tuple[Any, str | None]:
        size = (row["width"], row["height"]) if row.get("width") and row.get("height") else None
        try:
            image = read_rgb(row["uri"], size, upright=self.upright)
        except ImageError as e:
            return None, str(e)
        prepare = getattr(self.predictor, "prepare", None)
        return (prepare(image, row) if prepare else image), None

    def run_decoded(self, images: list, rows: list[dict]) -> pa.Table:
        """The predictor on images decoded by the caller (video frames, decoded as a stream:
        :mod:`pipeline.video`): ``prepare`` in the decode threads, then one call. Returns one row per image:
        ``image_id`` and the predictor's columns."""
        prepare = getattr(self.predictor, "prepare", None)
        items = list(self.decoders.map(prepare, images, rows)) if prepare else list(images)
        out = self.predictor(items, rows).select(self.predictor.schema.names).cast(self.predictor.schema)
        return out.add_column(0, "image_id", pa.array([r["image_id"] for r in rows], pa.int64()))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        loaded = list(self.decoders.map(self._load, rows))
        good = [i for i, (_, problem) in enumerate(loaded) if problem is None]
        bad = [i for i, (_, problem) in enumerate(loaded) if problem is not None]
        schema = self.predictor.schema
        out = self.predictor([loaded[i][0] for i in good], [rows[i] for i in good]) if good else schema.empty_table()
        if out.num_rows != len(good):
            raise RuntimeError(f"{type(self.predictor).__name__} returned {out.num_rows} rows for {len(good)} images")
        out = out.select(schema.names).cast(schema)
        filler = pa.table({f.name: pa.nulls(len(bad), f.type) for f in schema}, schema=schema)
        # Rows of `out` then of `filler` are in the order good + bad: put them back in input order.
        position = np.empty(len(rows), dtype=np.int64)
        position[np.asarray(good + bad, dtype=np.int64)] = np.arange(len(rows))
        merged = pa.concat_tables([out, filler]).take(pa.array(position))
        problems = pa.array([loaded[i][1] for i in range(len(rows))], pa.string())
        return merged.add_column(0, "image_id", batch["image_id"].combine_chunks()).append_column("problem", problems)


def shippable(path: str) -> str:
    """A path that actors can open: absolute (they run in another directory), or the URI unchanged."""
    from pathlib import Path

    from pipeline import storage

    return str(Path(path.removeprefix("file://")).resolve()) if storage.is_local(path) else path


def use_ray(n_images: int, placement: Placement, force: bool | None = None, local_limit: int = LOCAL_LIMIT) -> bool:
    """Whether a run goes to Ray: ``force`` when given; else yes with a Ray address (param or
    ``RAY_ADDRESS``) or more than ``local_limit`` images; else in-process."""
    from pipeline.distributed import resolve_address

    if force is not None:
        return force
    return bool(resolve_address(placement.ray_address or None)) or n_images > local_limit


def run_predictor(images: pa.Table, predictor: type, kwargs: dict, placement: Placement, *, ray: bool,
                  upright: bool = False, desc: str = "images") -> PoolRun:
    """Runs ``predictor(**kwargs)`` over ``images`` (one row per image).

    Args:
        images: ``image_id`` (unique int64), ``uri``, optional ``width`` / ``height`` (the decoded image
            must have that size), and any column the predictor reads from its rows.
        predictor: a class following the predictor protocol (plain data in ``kwargs``: it is shipped).
        kwargs: constructor arguments, besides ``device``.
        placement: batch size, actors, device, Ray address.
        ray: run on a Ray Data actor pool (Ray started or joined here) instead of in this process.
        upright: apply EXIF orientation when decoding (user photos; not dataset images).
        desc: progress bar label.

    Returns:
        :class:`PoolRun`.

    Raises:
        ValueError: missing or duplicate keys, or ``device: cuda`` without a GPU.
    """
    for col in ("image_id", "uri"):
        if col not in images.column_names:
            raise ValueError(f"images to run: missing column {col!r}; has {images.column_names}")
    ids = images["image_id"].to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise ValueError("images to run: image_id values are not unique")
    start = time.perf_counter()
    if images.num_rows == 0:
        parts, info = [], {"mode": "none", "actors": 0, "device": "none"}
    elif ray:
        parts, info = _on_ray(images, predictor, kwargs, placement, upright, desc)
    else:
        parts, info = _in_process(images, predictor, kwargs, placement, upright, desc)
    info["seconds"] = round(time.perf_counter() - start, 3)
    if not parts:  # no image at all: an empty table of the predictor's columns
        schema = pa.schema([("image_id", pa.int64()), *predictor.schema])
        return PoolRun(schema.empty_table(), [], info)
    result = pa.concat_tables(parts).sort_by("image_id")
    problem = result["problem"]
    failed = result.filter(problem.is_valid())
    uri = dict(zip(images["image_id"].to_pylist(), images["uri"].to_pylist()))
    rejects = [(uri[i], str(i), reason) for i, reason in zip(failed["image_id"].to_pylist(),
                                                              failed["problem"].to_pylist())]
    table = result.filter(problem.is_null()).drop_columns(["problem"])
    return PoolRun(table, rejects, info)


def local_device(device: str) -> str:
    """The device of an in-process run: cuda when asked or (``auto``) available."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("placement device is cuda but torch sees no GPU here")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


def _in_process(images, predictor, kwargs, placement, upright, desc):
    device = local_device(placement.device)
    worker = PoolWorker(predictor, kwargs, device, None, upright)
    parts = []
    bs = placement.batch_size
    with tqdm(total=images.num_rows, desc=desc, unit="img", mininterval=1.0) as bar:
        for i in range(0, images.num_rows, bs):
            parts.append(worker(images.slice(i, bs)))
            bar.update(parts[-1].num_rows)
    return parts, {"mode": "in-process", "actors": 1, "device": device}


def pool_size(view, device: str, actors: int, n_batches: int) -> tuple[int, bool, str]:
    """The size and kind of a Ray actor pool, and why (for the log).

    GPU actors when ``device`` is cuda, or auto and the cluster has GPUs or its autoscaler can add GPU
    nodes: one actor per GPU it can reach (up now or addable; ``actors`` where the autoscaler sets no
    limit); else ``actors`` CPU actors. Never more actors than batches.

    Args:
        view: :class:`pipeline.capacity.ClusterView` of the connected cluster.
        device: ``auto``, ``cuda`` or ``cpu`` (placement device).
        actors: the placement's actor count (the CPU pool's size).
        n_batches: batches to run.

    Raises:
        ValueError: ``device: cuda`` on a cluster that has no GPU and can add none.
    """
    up = int(sum(g for _, g in view.nodes))
    reachable = view.reachable_gpus() if view.types_known else up
    if view.autoscaler and not view.types_known and device == "cuda":
        reachable = max(up, 1)  # its node types are not visible here: ask for one, the autoscaler decides
    can_gpu = reachable is None or reachable >= 1
    if device == "cuda" and not can_gpu:
        raise ValueError("placement device is cuda but the Ray cluster has no GPU"
                         + (" and its autoscaler can add none" if view.autoscaler else ""))
    if device == "cpu" or not can_gpu:
        why = ("device cpu" if device == "cpu" else
               "device auto and no GPU in the cluster" + (" nor in the node types its autoscaler can add"
                                                          if view.types_known else ""))
        if device == "auto" and view.autoscaler and not view.types_known:
            why += " (the autoscaler's node types are not visible here: DEFR_AUTOSCALING_CONFIG)"
        return max(1, min(actors, n_batches)), False, why + f": placement actors = {actors}"
    count = actors if reachable is None else int(reachable)
    added = "no limit" if reachable is None else f"{int(reachable) - up}"
    why = (f"device {device}: {up} GPU(s) up, {added} more the autoscaler can add: one actor per GPU"
           if view.autoscaler else f"device {device}: {up} GPU(s) in the cluster: one actor per GPU")
    return max(1, min(count, n_batches)), True, why


def _on_ray(images, predictor, kwargs, placement, upright, desc):
    from pipeline.capacity import check_resources, cluster_view
    from pipeline.distributed import init_ray

    ray = init_ray(placement.ray_address or None, timeout_s=placement.connect_timeout_s)
    bs = placement.batch_size
    n_batches = -(-images.num_rows // bs)
    size, gpu, why = pool_size(cluster_view(), placement.device, placement.actors, n_batches)
    log.info("%s: %d %s actor(s): %s", desc, size, "GPU" if gpu else "CPU", why)
    # A pool the cluster can never hold would wait for its actors forever: fail now, with the numbers; one
    # it holds once its autoscaler adds nodes waits for them here, saying so.
    check_resources(size, placement.cpus_per_actor, 1 if gpu else 0, f"{desc}: {size} actors",
                    "the stage's placement actors / cpus_per_actor / device")
    resources = {"num_gpus": 1} if gpu else {}
    # Blocks of one batch each, so that every actor of the pool gets work from the first batch on.
    blocks = [images.slice(i, bs) for i in range(0, images.num_rows, bs)]
    ds = ray.data.from_arrow(blocks).map_batches(
        PoolWorker, batch_size=bs, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"predictor": predictor, "kwargs": kwargs, "device": "cuda" if gpu else "cpu",
                               "threads": placement.cpus_per_actor, "upright": upright},
        num_cpus=placement.cpus_per_actor, **resources)
    log.info("%s: %d images on %d %s actor(s)", desc, images.num_rows, size, "GPU" if gpu else "CPU")
    parts = []
    with tqdm(total=images.num_rows, desc=desc, unit="img", mininterval=1.0) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            parts.append(batch)
            bar.update(batch.num_rows)
    return parts, {"mode": "ray", "actors": size, "device": "cuda" if gpu else "cpu"}

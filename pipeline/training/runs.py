"""One training run from the driver's side: inputs, run name, Ray Train (or a Tune sweep), export, metrics.

The train stage calls :func:`train` (or :func:`sweep_grid`); everything here is plain data in, files out.
The Ray Train run is named ``<run_name>-<hash of the training settings and input contents>``: re-running
after a crash resumes that run from its last checkpoint; changing a setting, an input or the library's code
starts a new run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.model import ModelConfig
from pipeline.placement import TrainPlacement
from pipeline.training.sampling import split_batch

# What metrics/train.json records of the batch split (effective_global_batch = workers x micro_batch x accumulation)
BATCH_KEYS = ("effective_global_batch", "workers", "micro_batch", "accumulation")

log = logging.getLogger(__name__)


def read_text_embeddings(path: str, num_classes: int) -> tuple[np.ndarray, dict[str, str]]:
    """[num_classes, D] float32 embeddings ordered by ``hoi`` and the file's metadata; raises naming the file."""
    table = storage.read_parquet(path)
    meta = storage.parquet_metadata(path)
    for col in ("hoi", "embedding"):
        if col not in table.column_names:
            raise ValueError(f"{path}: missing column {col!r} (expected hoi, prompt, embedding)")
    hoi = np.asarray(table.column("hoi").to_numpy(), dtype=np.int64)
    if sorted(hoi.tolist()) != list(range(num_classes)):
        raise ValueError(f"{path}: has {len(hoi)} rows with hoi ids {hoi.min()}..{hoi.max()}; expected each of "
                         f"0..{num_classes - 1} exactly once")
    rows = table.column("embedding").to_pylist()
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise ValueError(f"{path}: embeddings have differing lengths {sorted(dims)}")
    emb = np.asarray(rows, dtype=np.float32)[np.argsort(hoi)]
    if "dim" in meta and int(meta["dim"]) != emb.shape[1]:
        raise ValueError(f"{path}: metadata dim {meta['dim']} but embeddings have {emb.shape[1]} values")
    return emb, meta


def fingerprint(uri: str) -> str:
    """Content hash of an input file (a re-prepared dataset must not resume the old run)."""
    digest = hashlib.sha1()
    with storage.open_file(uri) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_fingerprint(root: Path | None = None) -> str:
    """Content hash of the library's Python sources (``pipeline/`` by default): DVC re-runs train when its
    code changes, and that run must train with the new code, not resume the finished run of the old one
    and export its checkpoint again. A crash with no code edit in between still resumes."""
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_name(prefix: str, settings: dict[str, Any], inputs: dict[str, str]) -> str:
    """``<prefix>-<hash>`` of the settings that shape training and of the inputs (fingerprints)."""
    key = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def percent(fraction: float | None) -> float | None:
    """A mAP fraction (what the training loop computes) as the percent that metrics/ and plots/ hold."""
    return None if fraction is None else round(100.0 * float(fraction), 4)


def history_csv(history: list[dict]) -> str:
    """plots/train/history.csv: one row per epoch, validation mAP in percent."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["epoch", "train_loss", "val_map", "lr"], extrasaction="ignore")
    w.writeheader()
    w.writerows({**h, "val_map": percent(h.get("val_map"))} for h in history)
    return out.getvalue()


def check_model(model: ModelConfig, text: np.ndarray) -> None:
    """Builds the classifier once in the driver (random weights: fast), so that a configuration error
    (a model name, a classifier position, embeddings of the wrong shape, a missing checkpoint file or an
    unknown pretrained tag) fails here with its message instead of in every Ray worker, retried."""
    import dataclasses

    from pipeline.model import build_model, check_pretrained

    check_pretrained(model.model_name, model.pretrained)
    build_model(dataclasses.replace(model, pretrained="", metadata=dict(model.metadata)),
                text if model.init == "text" else None)


def _prepare(images: str, text_path: str, model: ModelConfig, recipe: dict[str, Any], where: TrainPlacement,
             ray_address: str | None, connect_timeout_s: float | None = None):
    """Driver-side set-up shared by a run and a sweep: embeddings, run name, Ray, storage check."""
    from pipeline.capacity import check_resources
    from pipeline.distributed import check_storage_path, cluster_nodes, init_ray
    from pipeline.training.launcher import loop_config

    # Read even for init: random: the head then keeps the text-init shapes (a like-for-like ablation).
    text, meta = read_text_embeddings(text_path, model.num_classes)
    model.text_model = meta.get("model", "")
    split = split_batch(recipe["global_batch"], where.num_workers, where.micro_batch)
    # the placement that changes the arithmetic (sums in another order, bf16) names another run
    settings = {"model": model.to_dict(), "recipe": recipe, "num_workers": where.num_workers,
                "micro_batch": split.micro_batch, "precision": where.precision}
    name = run_name(where.run_name, settings, {"images": fingerprint(images), "text": fingerprint(text_path),
                                               "code": code_fingerprint()})
    check_model(model, text)
    storage.check_access(where.storage_path, "placement.train.storage_path")  # seconds, not after Ray starts
    if where.shards:  # the train split packed there once, before Ray starts (pipeline/datasets/shards.py)
        from pipeline.datasets.shards import pack_split

        log.info(pack_split(images, "train", where.shards))
    init_ray(ray_address, timeout_s=connect_timeout_s)
    check_resources(where.num_workers, where.cpus_per_worker, 1 if where.use_gpu else 0,
                    f"train: {where.num_workers} Ray Train workers",
                    "placement.train.num_workers / cpus_per_worker / use_gpu")
    storage_path = check_storage_path(where.storage_path, cluster_nodes(), where.shared_storage,
                                      "placement.train.storage_path")
    config = loop_config(images, text, model, loader_workers=where.loader_workers, decode=where.decode,
                         cpus_per_worker=where.cpus_per_worker, micro_batch=where.micro_batch,
                         precision=where.precision, compile=where.compile, shards=where.shards, **recipe)
    return config, name, storage_path


def train(images: str, text_path: str, model: ModelConfig, recipe: dict[str, Any], where: TrainPlacement,
          model_out: str, ray_address: str | None = None, connect_timeout_s: float | None = None,
          on_report: Callable[[dict[str, Any]], None] | None = None
          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fine-tunes with Ray Train, exports the best epoch to ``model_out`` (atomically).

    ``on_report`` (optional) is called in this process with each epoch's metrics as the run goes
    (:func:`pipeline.training.launcher.forwarded_reports`): the caller's live logger.

    Returns:
        (metrics of the run, the per-epoch history).
    """
    from pipeline.training.launcher import export, forwarded_reports, make_trainer

    config, name, storage_path = _prepare(images, text_path, model, recipe, where, ray_address, connect_timeout_s)
    with forwarded_reports(on_report) as callbacks:
        trainer = make_trainer(config, where.num_workers, where.use_gpu, name, storage_path, where.max_failures,
                               where.cpus_per_worker, callbacks=callbacks)
        log.info("Ray Train run %s under %s", name, storage_path)
        result = trainer.fit()
    history = export(result, model_out)
    best = max(history, key=lambda h: h["val_map"])
    # Only what the result is: throughput goes to the log, so the same inputs give the same metrics file.
    log.info("%.1f images/s per worker (mean over epochs)",
             float(np.mean([h["images_per_s_per_worker"] for h in history])))
    # Percent, rounded as every mAP in metrics/ (evaluate's too): one unit in `dvc metrics show`.
    metrics = {"best_val_map": percent(best["val_map"]), "best_epoch": best["epoch"], "epochs": len(history),
               "final_train_loss": history[-1]["train_loss"], "resumes": history[-1].get("resumes", 0),
               "model": model.model_name, "run": name, "demo_only": bool(model.metadata.get("demo_only")),
               # the batch that trained, as the workers split it (workers x micro_batch x accumulation)
               **{k: history[-1][k] for k in BATCH_KEYS}}
    return metrics, history


def sweep_grid(images: str, text_path: str, model: ModelConfig, recipe: dict[str, Any], where: TrainPlacement,
               space: dict[str, list], ray_address: str | None = None, connect_timeout_s: float | None = None):
    """A Ray Tune grid over recipe keys / model fields (nothing exported); returns the trials as a DataFrame
    sorted by best validation mAP."""
    from pipeline.training.sweep import sweep

    if not isinstance(space, dict) or not all(isinstance(v, list) and v for v in space.values()):
        raise ValueError("sweep: expected a mapping of key -> non-empty list of values")
    for batch in space.get("global_batch", []):  # refused before any trial starts, as the stage does
        split_batch(batch, where.num_workers, where.micro_batch)
    config, name, storage_path = _prepare(images, text_path, model, recipe, where, ray_address, connect_timeout_s)
    if storage.is_local(storage_path):
        storage_path = str(Path(storage_path).resolve())
    results = sweep(config, space, f"{name}-sweep", storage_path, where.num_workers, where.use_gpu,
                    where.sweep_concurrency, where.cpus_per_worker)
    frame = results.get_dataframe()
    if "best_val_map" in frame.columns:  # Ray Tune's metric is the loop's fraction; the table says percent
        frame["best_val_map"] = (100.0 * frame["best_val_map"]).round(4)
    cols = [c for c in frame.columns if c.startswith("config/")] + ["best_val_map", "best_epoch", "train_loss"]
    return frame[[c for c in cols if c in frame.columns]].sort_values("best_val_map", ascending=False)

"""Fine-tune the DEFR classifier with Ray Train and export the best checkpoint by validation mAP.

Laptop (local Ray):
    python -m stages.train --images data/prepared/images.parquet \
        --text-embeddings data/text_embeddings.parquet --model-out models/defr \
        --history plots/train/history.csv --metrics metrics/train.json
Cluster: the same command with ``train.ray_address`` (or RAY_ADDRESS) set, ``train.storage_path`` on shared
storage (s3://, gs://, NFS) and ``train.num_workers`` / ``train.use_gpu`` sized to the cluster.

Sweeps (Ray Tune over the trainer; one run per grid point, nothing exported):
    python -m stages.train ... --sweep sweep.yaml --sweep-out sweeps/gamma.csv
with sweep.yaml e.g. ``{gamma: [50, 100, 150], loss: [lse_sign, bce]}`` (keys: recipe keys or model fields).

The Ray Train run is named ``<train.run_name>-<hash of the training params and inputs>``: re-running after a
crash resumes that run from its last checkpoint; changing a param starts a new run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging

import numpy as np

from pipeline import storage
from pipeline.model import ModelConfig
from stages import params as P

log = logging.getLogger("stages.train")

MODEL_KEYS = {"model": "model_name", "pretrained": "pretrained", "image_size": "image_size", "gamma": "gamma",
              "classifier_position": "classifier_position", "init": "init"}
RECIPE_KEYS = ("loss", "ambiguous_as", "unknown_as", "lr", "epochs", "restart_epochs", "batch_size",
               "global_batch", "min_per_class", "crop_scale", "jitter", "seed", "loader_workers")


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


def run_name(p: dict, images: str, text: str) -> str:
    """``<run_name>-<hash>`` of the params that shape training and of the inputs (paths or fingerprints)."""
    key = json.dumps({k: p.get(k) for k in sorted(set(MODEL_KEYS) | set(RECIPE_KEYS) | {"num_workers"})}
                     | {"images": images, "text": text}, sort_keys=True, default=str)
    return f"{p['run_name']}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def history_csv(history: list[dict]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["epoch", "train_loss", "val_map", "lr"], extrasaction="ignore")
    w.writeheader()
    w.writerows(history)
    return out.getvalue()


def run_sweep(args, p: dict, config: dict, name: str) -> dict:
    import yaml

    from pipeline.training.sweep import sweep

    space = yaml.safe_load(open(args.sweep))
    if not isinstance(space, dict) or not all(isinstance(v, list) and v for v in space.values()):
        raise ValueError(f"{args.sweep}: expected a mapping of key -> non-empty list of values")
    storage_path = str(p["storage_path"])
    if storage.is_local(storage_path):
        from pathlib import Path
        storage_path = str(Path(storage_path).resolve())
    results = sweep(config, space, f"{name}-sweep", storage_path, int(p["num_workers"]), bool(p["use_gpu"]),
                    int(p.get("sweep_concurrency", 1)), float(p.get("cpus_per_worker", 1)))
    frame = results.get_dataframe()
    cols = [c for c in frame.columns if c.startswith("config/")] + ["best_val_map", "best_epoch", "train_loss"]
    frame = frame[[c for c in cols if c in frame.columns]].sort_values("best_val_map", ascending=False)
    storage.write_text(frame.to_csv(index=False), args.sweep_out)
    log.info("sweep of %d trials -> %s\n%s", len(frame), args.sweep_out, frame.to_string(index=False))
    return {"trials": len(frame), "best_val_map": float(frame["best_val_map"].max())}


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--text-embeddings", required=True)
    ap.add_argument("--model-out", required=True)
    ap.add_argument("--history", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--sweep", help="YAML {key: [values]}: run a Ray Tune grid instead of one training run")
    ap.add_argument("--sweep-out", default="sweep.csv", help="CSV of the sweep's trials (with --sweep)")
    args = ap.parse_args(argv)
    P.setup_logging()
    p = P.load("train", args.params)

    from pipeline.distributed import check_storage_path, cluster_nodes, init_ray
    from pipeline.training.launcher import export, loop_config, make_trainer

    mconf = ModelConfig(**{field: P.require(p, key, "train") for key, field in MODEL_KEYS.items()})
    # Read even for init: random: the head then keeps the text-init shapes (a like-for-like ablation).
    text, meta = read_text_embeddings(args.text_embeddings, mconf.num_classes)
    mconf.text_model = meta.get("model", "")
    mconf.metadata = {"demo_only": bool(p.get("demo_only", False)), "trained_by": "stages.train"}
    recipe = {k: P.require(p, k, "train") for k in RECIPE_KEYS}
    name = run_name(p, fingerprint(args.images), fingerprint(args.text_embeddings))
    storage.check_access(str(p["storage_path"]), "train.storage_path")  # seconds, not after Ray starts
    init_ray(p.get("ray_address") or None)
    p["storage_path"] = check_storage_path(str(p["storage_path"]), cluster_nodes(), p.get("shared_storage"),
                                           "train.storage_path")
    if args.sweep:
        return run_sweep(args, p, loop_config(args.images, text, mconf, **recipe), name)
    trainer = make_trainer(loop_config(args.images, text, mconf, **recipe), int(p["num_workers"]),
                           bool(p["use_gpu"]), name, str(p["storage_path"]), int(p["max_failures"]),
                           float(p.get("cpus_per_worker", 1)))
    log.info("Ray Train run %s under %s", name, p["storage_path"])
    result = trainer.fit()
    history = export(result, args.model_out)
    best = max(history, key=lambda h: h["val_map"])
    metrics = {"best_val_map": best["val_map"], "best_epoch": best["epoch"], "epochs": len(history),
               "final_train_loss": history[-1]["train_loss"], "resumes": history[-1].get("resumes", 0),
               "images_per_s_per_worker": float(np.mean([h["images_per_s_per_worker"] for h in history])),
               "model": mconf.model_name, "run": name, "demo_only": mconf.metadata["demo_only"]}
    storage.write_text(history_csv(history), args.history)
    storage.write_json(metrics, args.metrics)
    log.info("best val mAP %.4f at epoch %d -> %s", best["val_map"], best["epoch"], args.model_out)
    return metrics


if __name__ == "__main__":
    main()

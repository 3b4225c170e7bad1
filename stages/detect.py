"""Human and object boxes of the test images: an MMDetection detector, imported detections, or the oracle.

Laptop (inside .venv):
    python -m stages.detect --images data/prepared/images.parquet --pairs data/prepared/pairs.parquet \
        --out data/detections.parquet --rejects data/detect_rejects.parquet
Cluster: the same command with RAY_ADDRESS=ray://<head>:10001 (or ``placement.ray_address``, --ray-address,
or `dvc repro detect` on the head node); backend ``mmdet`` then runs one detector per GPU of the cluster (a
CPU actor pool without GPUs: ``placement.detect``). Images and checkpoints may be fsspec URIs (s3://,
gs://) readable by every node.

Reads params.yaml ``detect``: backend (mmdet | precomputed | oracle), split, score_floor, max_per_image
and the chosen backend's subsection; ``placement.detect`` for the actor pool. The demo default, ``oracle``, perturbs ground-truth boxes: DEMO ONLY,
its output metadata says so. Writes ``detections`` Parquet (image_id, box xyxy original pixels, label
COCO-80 with person = 0, score; metadata: backend, counts) and a rejects report of the images that could
not be used (undecodable, missing detection file...); the stage continues past them.
"""
from __future__ import annotations

import logging

import pyarrow.compute as pc

from pipeline import storage
from pipeline.detection import oracle
from pipeline.detection.boxes import Counts, finish, rejects_table, to_table
from stages import console
from stages import params as stage_params

log = logging.getLogger("stages.detect")
BACKENDS = ("mmdet", "precomputed", "oracle")


def _mmdet(images, p: dict, where: dict):
    try:
        import mmdet.apis  # noqa: F401
    except ImportError as e:
        raise ImportError("params.yaml detect.backend: mmdet needs the MMDetection stack: run "
                          f"`bash scripts/install_mmdet.sh .venv/bin/python` (docs/detection.md): {e}") from e
    from pipeline.detection.actor_pool import DetectorSpec, detect_images
    from pipeline.distributed import init_ray

    m = p["mmdet"]
    checkpoint = stage_params.named_file(m["checkpoint"])
    # Fail here, with the parameter's name, rather than inside every Ray actor.
    if bool(checkpoint) == bool(m["random_weights"]):
        raise ValueError("params.yaml detect.mmdet: give a checkpoint (path or URI) or random_weights: true "
                         f"(tests and demos only), not {'both' if checkpoint else 'neither'}")
    if checkpoint and not storage.exists(checkpoint):
        raise FileNotFoundError(f"params.yaml detect.mmdet.checkpoint: {checkpoint} does not exist")
    spec = DetectorSpec(config=stage_params.named_file(m["config_file"]) or m["config"],
                        checkpoint=checkpoint or "random", test_scale=m["test_scale"] or None,
                        trusted_checkpoint=m["trusted_checkpoint"],
                        allow_unmapped_classes=m["allow_unmapped_classes"], seed=m["seed"],
                        score_floor=float(p["score_floor"]), max_per_image=int(p["max_per_image"]))
    from pipeline.detection.mmdet_backend import MMDetDetector

    # Build the detector once here: a bad config, checkpoint or class set fails now with its message,
    # not as an actor-construction error inside the Ray pool.
    probe = MMDetDetector(spec.config, spec.checkpoint, test_scale=spec.test_scale,
                          trusted_checkpoint=spec.trusted_checkpoint,
                          allow_unmapped_classes=spec.allow_unmapped_classes, seed=spec.seed)
    config, classes_source = str(probe.config_path), probe.classes_source
    del probe
    init_ray(where["ray_address"] or None)
    dets, rejects, counts = detect_images(
        images, spec, actors=where["actors"], cpus_per_actor=where["cpus_per_actor"],
        batch_size=where["batch_size"], device=where["device"])
    meta = {"config": config, "checkpoint": spec.checkpoint, "test_scale": spec.test_scale,
            "classes_from": classes_source, **counts}
    if spec.checkpoint == "random":
        meta["weights"] = "random: tests and demos only, not a trained detector"
    return dets, rejects, meta


def _precomputed(images, p: dict):
    from pipeline.detection.precomputed import read_precomputed

    q = p["precomputed"]
    path = stage_params.named_file(q["path"])
    if not path:
        raise ValueError(f"params.yaml detect.precomputed.path is {stage_params.NO_FILE} (no file): give the "
                         "directory of per-image JSON files or the detections table (detect.backend: precomputed)")
    dets, rejects, extra = read_precomputed(q["format"], path, images, q["label_space"])
    counts = Counts()
    dets = [finish(d, w, h, float(p["score_floor"]), int(p["max_per_image"]), counts)
            for d, w, h in _sizes(dets, images)]
    return dets, rejects, {"path": path, "format": q["format"], "label_space": q["label_space"],
                           **counts.as_dict(), **extra}


def _oracle(images, pairs_path: str, p: dict):
    o = p["oracle"]
    cfg = oracle.OracleConfig(seed=int(o["seed"]), jitter=float(o["jitter"]), drop_rate=float(o["drop_rate"]),
                              false_positives=float(o["false_positives"]))
    pairs = storage.read_parquet(pairs_path)
    pairs = pairs.filter(pc.is_in(pairs["image_id"], images["image_id"]))
    counts = Counts()
    dets = [finish(d, w, h, float(p["score_floor"]), int(p["max_per_image"]), counts)
            for d, w, h in _sizes(oracle.oracle_detections(images, pairs, cfg), images)]
    return dets, [], {"oracle": oracle.LABEL, "seed": cfg.seed, "jitter": cfg.jitter,
                      "drop_rate": cfg.drop_rate, "false_positives": cfg.false_positives,
                      **counts.as_dict()}


def _sizes(dets, images):
    size = {i: (w, h) for i, w, h in zip(images["image_id"].to_pylist(), images["width"].to_pylist(),
                                          images["height"].to_pylist())}
    return [(d, *size[d.image_id]) for d in dets]


def run(images_path: str, pairs_path: str, out_path: str, rejects_path: str, p: dict,
        where: dict | None = None) -> dict:
    """Detects (or imports) the boxes of the ``split`` images; returns the metadata written.

    Args:
        p: the validated ``detect`` params; ``where``: ``placement.detect`` plus ``ray_address``.
    """
    where = where or {"ray_address": "", "batch_size": 8, "actors": 1, "cpus_per_actor": 1, "device": "auto"}
    backend = p["backend"]
    if backend not in BACKENDS:
        raise ValueError(f"params.yaml detect.backend must be one of {BACKENDS}, got {backend!r}")
    images = storage.read_parquet(images_path, columns=["image_id", "split", "file_name", "uri",
                                                        "width", "height"])
    images = storage.absolute_uris(images.filter(pc.equal(images["split"], p["split"])))
    if images.num_rows == 0:
        raise ValueError(f"{images_path} has no images of split {p['split']!r} (params.yaml detect.split)")
    log.info("backend %s on %d %s images", backend, images.num_rows, p["split"])
    if backend == "mmdet":
        dets, rejects, extra = _mmdet(images, p, where)
    elif backend == "precomputed":
        dets, rejects, extra = _precomputed(images, p)
    else:
        dets, rejects, extra = _oracle(images, pairs_path, p)
    if images.num_rows and not dets:
        raise ValueError(f"detect: none of the {images.num_rows} images could be used; first reasons: "
                         f"{[r[2] for r in rejects[:3]]}")
    table = to_table(dets)
    meta = {"backend": backend, "split": p["split"], "score_floor": float(p["score_floor"]),
            "max_per_image": int(p["max_per_image"]), "images": images.num_rows,
            "images_used": len(dets), "images_rejected": len(rejects), "detections": table.num_rows,
            **{f"{backend}.{k}": v for k, v in extra.items()}}
    if backend == "oracle":
        meta["oracle"] = "demo only"
    storage.write_parquet(rejects_table(rejects), rejects_path, metadata={"stage": "detect"})
    storage.write_parquet(table, out_path, metadata=meta)
    log.info("wrote %d detections of %d images to %s (%d rejected, listed in %s)", table.num_rows,
             len(dets), out_path, len(rejects), rejects_path)
    return meta


def main(argv: list[str] | None = None) -> dict:
    ap = stage_params.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="images.parquet of the prepare stage")
    ap.add_argument("--pairs", required=True, help="pairs.parquet (ground truth; read by the oracle only)")
    ap.add_argument("--out", required=True, help="detections.parquet to write")
    ap.add_argument("--rejects", required=True, help="rejects report to write")
    ap.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    args = ap.parse_args(argv)
    stage_params.setup_logging()
    where = stage_params.placement("detect", args.params)
    if args.ray_address:
        where["ray_address"] = args.ray_address
    return run(args.images, args.pairs, args.out, args.rejects, stage_params.load("detect", args.params), where)


if __name__ == "__main__":
    console.run(main, "detect")

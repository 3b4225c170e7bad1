"""Image-level HOI scores (600 logits per image) for the test split, as Ray Data batch inference.

Laptop (local Ray):
    python -m stages.predict --images data/prepared/images.parquet --model models/defr \
        --out data/image_scores.parquet
Cluster: the same command with ``placement.ray_address`` (or RAY_ADDRESS) set: one model per GPU of the
cluster (``placement.predict.device: auto``), or ``placement.predict.actors`` CPU replicas without GPUs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline import schemas, storage
from stages import console
from stages import params as P

log = logging.getLogger("stages.predict")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--model", required=True, help="model folder (model.safetensors + config.json) or URI")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    P.setup_logging()
    p, where = P.load("predict", args.params), P.placement("predict", args.params)

    from pipeline.batch_inference import predict_scores
    from pipeline.distributed import init_ray
    from pipeline.model import load_checkpoint
    from pipeline.training.dataset import split_rows

    model = load_checkpoint(args.model)  # fail fast, in the driver, on a bad checkpoint
    cfg = model.config
    del model
    images = split_rows(storage.absolute_uris(storage.read_parquet(args.images)), p["split"])
    ray = init_ray(where["ray_address"] or None)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = where["device"] == "cuda" or (where["device"] == "auto" and gpus > 0)
    if use_gpu and not gpus:
        raise ValueError("params.yaml placement.predict.device is cuda but the Ray cluster has no GPU")
    table = predict_scores(images, str(Path(args.model).resolve()) if storage.is_local(args.model) else args.model,
                           cfg.image_size, where["batch_size"], gpus if use_gpu else where["actors"],
                           1.0 if use_gpu else 0.0, where["cpus_per_actor"])
    if table.num_rows != images.num_rows:
        raise RuntimeError(f"scored {table.num_rows} of {images.num_rows} images")
    meta = {"model": cfg.model_name, "text_model": cfg.text_model, "image_size": cfg.image_size,
            "num_classes": cfg.num_classes, "split": p["split"], "scores": "logits",
            "demo_only": json.dumps(bool(cfg.metadata.get("demo_only", False)))}
    storage.write_parquet(schemas.conform(table, schemas.IMAGE_SCORES, args.out), args.out, metadata=meta)
    log.info("wrote %d image scores to %s", table.num_rows, args.out)
    return {"rows": table.num_rows}


if __name__ == "__main__":
    console.run(main, "predict")

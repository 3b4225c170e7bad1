"""Image-level HOI scores (one logit per class of the model) for the test split, on the inference engine.

Laptop (local Ray):
    python -m stages.predict --images data/prepared/images.parquet --model models/defr \
        --out data/image_scores.parquet
Cluster: the same command with ``placement.ray_address`` (or RAY_ADDRESS) set: one model per GPU of the
cluster (``placement.predict.device: auto``), or ``placement.predict.actors`` CPU replicas without GPUs.
"""
from __future__ import annotations

import logging

from pipeline import storage
from pipeline.placement import Placement
from pipeline.inference.predict_split import predict_split
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.predict")


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--model", required=True, help="model folder (model.safetensors + config.json) or URI")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    P.setup_logging()
    p, where = P.load("predict", args.params), Placement.from_dict(P.placement("predict", args.params))
    table, meta = predict_split(args.images, args.model, p["split"], where)
    storage.write_parquet(table, args.out, metadata=meta)
    log.info("wrote %d image scores to %s", table.num_rows, args.out)
    return {"rows": table.num_rows}


if __name__ == "__main__":
    console.run(main, "predict")

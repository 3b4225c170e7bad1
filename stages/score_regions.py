"""HOI detection with the image-level classifier: each human-object box pair masks the last ViT block(s).

Laptop (inside .venv):
    python -m stages.score_regions --model models/defr --detections data/detections.parquet \
        --images data/prepared/images.parquet --out data/hoi_detections.parquet --plots plots/attention
Cluster: the same command with RAY_ADDRESS=ray://<head>:10001 (or --ray-address, or `dvc repro
score_regions` on the head node): one scoring actor per GPU of the cluster (a CPU actor pool without
GPUs). The model directory and image URIs may be fsspec URIs readable by every node.

Reads params.yaml ``score_regions`` (pair generation, masking, score formula, attention plots) and
``placement.score_regions`` (the actor pool).
Writes ``hoi_detections`` Parquet (image_id, hoi, human_box, object_box, score; boxes in original pixels;
metadata: params, counts of pairs and rejected boxes) and, for ``attention_maps`` images, PNGs of the
last block's CLS attention without and with the top pair's mask (paper Fig. 4). Images without pairs
give no rows. On the demo the classifier is a tiny random-init model (DEMO ONLY: metadata says so).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import pyarrow.compute as pc

from pipeline import schemas, storage
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams
from stages import console
from stages import params as stage_params

log = logging.getLogger("stages.score_regions")


def _params(p: dict) -> tuple[PairParams, ScoreParams]:
    pair = PairParams(float(p["score_threshold"]), float(p["nms_threshold"]), int(p["max_humans"]),
                      int(p["max_objects"]))
    score = ScoreParams(masked_layers=int(p["masked_layers"]), patch_rule=str(p["patch_rule"]),
                        min_fraction=float(p["min_fraction"]), score_power=float(p["score_power"]),
                        top_k=int(p["top_k"]), path=str(p["path"]))
    return pair, score


def _attention_plots(model_dir: str, images, table, plots: str, n: int, score: ScoreParams) -> int:
    """Fig. 4 plots of the top pair of the first ``n`` images with detections; returns how many."""
    from pipeline.attention_maps import save_attention_map
    from pipeline.model import inference_transform, load_checkpoint
    from pipeline.regions.actor_pool import load_image
    from pipeline.vocab import hico_vocabulary

    with storage.atomic_path(plots) as out:
        out.mkdir(parents=True)
        if n <= 0 or table.num_rows == 0:
            return 0
        model = load_checkpoint(model_dir, "cpu")
        transform, vocab = inference_transform(model.config), hico_vocabulary()
        info = {r["image_id"]: r for r in images.select(["image_id", "uri", "width", "height"]).to_pylist()}
        ids = sorted(set(table["image_id"].to_pylist()))[:n]
        for image_id in ids:
            rows = table.filter(pc.equal(table["image_id"], image_id))
            top = rows.slice(int(pc.index(rows["score"], pc.max(rows["score"])).as_py()), 1).to_pylist()[0]
            r, hoi = info[image_id], vocab[top["hoi"]]
            title = f"image {image_id}: {hoi.verb} {hoi.object} (score {top['score']:.3f})"
            save_attention_map(model, transform, load_image(r["uri"], r["width"], r["height"]),
                               top["human_box"], top["object_box"], out / f"image_{image_id}.png", title,
                               score.patch_rule, score.min_fraction)
        return len(ids)


def run(model_dir: str, detections_path: str, images_path: str, out_path: str, plots: str, p: dict,
        where: dict | None = None) -> dict:
    """Scores every pair of the ``split`` images; returns the metadata written with the output.

    Args:
        p: the validated ``score_regions`` params; ``where``: ``placement.score_regions`` plus ``ray_address``.
    """
    where = where or {"ray_address": "", "batch_size": 8, "actors": 1, "cpus_per_actor": 1, "device": "auto"}
    from pipeline.distributed import init_ray
    from pipeline.model import ModelConfig
    from pipeline.regions.actor_pool import image_pairs, score_images

    pair_params, score_params = _params(p)
    config_uri = storage.join(model_dir, "config.json")
    if not storage.exists(config_uri):
        raise FileNotFoundError(f"{config_uri} does not exist: run the train stage first (--model {model_dir})")
    with storage.open_file(config_uri) as f:
        cfg = ModelConfig.from_dict(json.load(f), source=config_uri)
    images = storage.read_parquet(images_path, columns=["image_id", "split", "uri", "width", "height"])
    images = storage.absolute_uris(images.filter(pc.equal(images["split"], p["split"])))
    if images.num_rows == 0:
        raise ValueError(f"{images_path} has no images of split {p['split']!r} (score_regions.split)")
    table, counts = image_pairs(images, storage.read_parquet(detections_path), pair_params)
    log.info("%d pairs on %d of %d images; boxes: %s", counts["pairs"], counts["images_with_pairs"],
             counts["images"], counts["boxes"] or "all valid")
    init_ray(where["ray_address"] or None)
    out, pool = score_images(table, model_dir, score_params, actors=where["actors"],
                             cpus_per_actor=where["cpus_per_actor"], batch_size=where["batch_size"],
                             device=where["device"])
    meta = {"stage": "score_regions", "model": cfg.model_name, "image_size": cfg.image_size,
            "demo_only": bool(cfg.metadata.get("demo_only", False)), "pairs": dataclasses.asdict(pair_params),
            "scoring": dataclasses.asdict(score_params), **counts, **pool, "rows": out.num_rows}
    if meta["demo_only"]:
        meta["note"] = "DEMO ONLY: tiny random-init classifier; scores carry no meaning"
    n_plots = _attention_plots(model_dir, images, out, plots, int(p["attention_maps"]), score_params)
    meta["attention_maps"] = n_plots
    storage.write_parquet(schemas.conform(out, schemas.HOI_DETECTIONS, "hoi_detections"), out_path, metadata=meta)
    log.info("wrote %d HOI detections of %d images to %s (%d attention maps in %s)", out.num_rows,
             counts["images_with_pairs"], out_path, n_plots, plots)
    return meta


def main(argv: list[str] | None = None) -> dict:
    ap = stage_params.parser(__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory of the train stage")
    ap.add_argument("--detections", required=True, help="detections.parquet of the detect stage")
    ap.add_argument("--images", required=True, help="images.parquet of the prepare stage")
    ap.add_argument("--out", required=True, help="hoi_detections.parquet to write")
    ap.add_argument("--plots", required=True, help="folder for the attention-map PNGs")
    ap.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    args = ap.parse_args(argv)
    stage_params.setup_logging()
    where = stage_params.placement("score_regions", args.params)
    if args.ray_address:
        where["ray_address"] = args.ray_address
    return run(args.model, args.detections, args.images, args.out, args.plots,
               stage_params.load("score_regions", args.params), where)


if __name__ == "__main__":
    console.run(main, "score_regions")

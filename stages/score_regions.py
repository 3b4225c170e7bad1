"""HOI detection with the image-level classifier: each human-object box pair masks the last ViT block(s).

Laptop (inside .venv):
    python -m stages.score_regions --model models/defr --detections data/detections.parquet \
        --images data/prepared/images.parquet --out data/hoi_detections.parquet --plots plots/attention \
        --rejects data/score_regions_rejects.parquet --official-results data/official_results
Cluster: the same command with RAY_ADDRESS=ray://<head>:10001 (or --ray-address, or `dvc repro
score_regions` on the head node): one scoring actor per GPU of the cluster (a CPU actor pool without
GPUs). The model directory and image URIs may be fsspec URIs readable by every node.

Reads params.yaml ``score_regions`` (pair generation, masking, score formula, attention plots),
``placement.score_regions`` (the actor pool) and ``checks.max_reject_fraction``.
Writes ``hoi_detections`` Parquet (image_id, hoi = class of the model, human_box, object_box, score; boxes
in original pixels; metadata: params, counts of pairs and rejected boxes), the rejects (unreadable images,
unusable boxes), with ``--official-results`` the same detections in the benchmark's official format (V-COCO:
one dict per detected person, ``vcoco_results.pkl``; :func:`pipeline.results.vcoco.official_list`) and,
for ``attention_maps`` images, PNGs of the last block's CLS attention without and with the top pair's
mask (paper Fig. 4). Images without pairs give no rows. A model whose classes involve no
object gives an empty table whose metadata says ``not_applicable``. On the demo the classifier is a tiny
random-init model (DEMO ONLY: metadata says so).
"""
from __future__ import annotations

import logging

from pipeline import storage
from pipeline.placement import Placement
from pipeline.inference.score_split import score_split
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.score_regions")


def run(model_dir: str, detections_path: str, images_path: str, out_path: str, plots: str, p: dict,
        where: dict | None = None, max_reject_fraction: float = 0.05, rejects_path: str | None = None,
        official_results: str | None = None) -> dict:
    """Scores every pair of the ``split`` images; returns the metadata written with the output.

    Args:
        p: the validated ``score_regions`` params; ``where``: ``placement.score_regions`` plus ``ray_address``.
        official_results: folder for the detections in the benchmark's official format (V-COCO:
            ``vcoco_results.pkl``; other datasets: a README saying there is none).
    """
    pair = PairParams(float(p["score_threshold"]), float(p["nms_threshold"]), int(p["max_humans"]),
                      int(p["max_objects"]))
    score = ScoreParams(masked_layers=int(p["masked_layers"]), patch_rule=str(p["patch_rule"]),
                        min_fraction=float(p["min_fraction"]), score_power=float(p["score_power"]),
                        top_k=int(p["top_k"]), path=str(p["path"]))
    with storage.atomic_path(plots) as plots_dir:
        plots_dir.mkdir(parents=True)
        result = score_split(model_dir, detections_path, images_path, p["split"], pair, score,
                             Placement.from_dict(where or {}), max_reject_fraction, plots_dir,
                             int(p["attention_maps"]), rejects_path or "")
        for line in result.summary:
            log.warning("%s", line)
        if rejects_path:
            storage.write_parquet(result.rejects, rejects_path, metadata={"stage": "score_regions"})
        storage.write_parquet(result.table, out_path, metadata=result.meta)
        if official_results:
            from pipeline.classes.space import model_classes
            from pipeline.model import read_model_config
            from pipeline.results.vcoco import write_official_results

            with storage.atomic_path(official_results) as folder:
                folder.mkdir(parents=True)
                written = write_official_results(result.table, images_path, p["split"],
                                                 model_classes(read_model_config(model_dir)).names, folder)
            log.info("official results: %s/%s", official_results, written)
    log.info("wrote %d HOI detections of %s images to %s (%d attention maps in %s)", result.table.num_rows,
             result.meta.get("images_with_pairs", 0), out_path, result.meta.get("attention_maps", 0), plots)
    return result.meta


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory of the train stage")
    ap.add_argument("--detections", required=True, help="detections.parquet of the detect stage")
    ap.add_argument("--images", required=True, help="images.parquet of the prepare stage")
    ap.add_argument("--out", required=True, help="hoi_detections.parquet to write")
    ap.add_argument("--plots", required=True, help="folder for the attention-map PNGs")
    ap.add_argument("--rejects", default=None, help="rejects report to write (unreadable images, unusable boxes)")
    ap.add_argument("--official-results", default=None, help="folder for the detections in the benchmark's official "
                    "format (V-COCO: vcoco_results.pkl, read by the official vsrl_eval.py)")
    ap.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    args = ap.parse_args(argv)
    P.setup_logging()
    where = P.placement("score_regions", args.params)
    if args.ray_address:
        where["ray_address"] = args.ray_address
    return run(args.model, args.detections, args.images, args.out, args.plots, P.load("score_regions", args.params),
               where, P.checks(args.params)["max_reject_fraction"], args.rejects, args.official_results)


if __name__ == "__main__":
    console.run(main, "score_regions")

"""Human and object boxes of the test images: an MMDetection detector, imported detections, or the oracle.

Laptop (inside .venv):
    python -m stages.detect --images data/prepared/images.parquet --pairs data/prepared/pairs.parquet \
        --out data/detections.parquet --rejects data/detect_rejects.parquet
Cluster: the same command with RAY_ADDRESS=ray://<head>:10001 (or ``placement.ray_address``, --ray-address,
or `dvc repro detect` on the head node); backend ``mmdet`` then runs one detector per GPU of the cluster (a
CPU actor pool without GPUs: ``placement.detect``). Images and checkpoints may be fsspec URIs (s3://,
gs://) readable by every node.

Reads params.yaml ``detect``: backend (mmdet | precomputed | oracle), split, score_floor, max_per_image
and the chosen backend's subsection; ``placement.detect`` for the actor pool; ``checks.max_reject_fraction``.
The demo default, ``oracle``, perturbs ground-truth boxes: DEMO ONLY, its output metadata says so. Writes
``detections`` Parquet (image_id, box xyxy original pixels, label COCO-80 with person = 0, score; metadata:
backend, counts) and a rejects report: unreadable images, missing or malformed detection files, and every
dropped box (degenerate, likely x, y, w, h, outside the image) with the reason. Losing more than
``checks.max_reject_fraction`` of the images or of the boxes fails the stage, writing nothing.
"""
from __future__ import annotations

import logging

from pipeline import storage
from pipeline.detection.oracle import OracleConfig
from pipeline.inference.detect_split import DetectOptions, PrecomputedSpec, detect_split
from pipeline.inference.detector_predictor import DetectorSpec
from pipeline.placement import Placement
from stage_support import console
from stage_support import params as P

log = logging.getLogger("stages.detect")


def options(p: dict) -> DetectOptions:
    """The library's options from the validated ``detect`` params."""
    m, q, o = p["mmdet"], p["precomputed"], p["oracle"]
    checkpoint = P.named_file(m["checkpoint"])
    if p["backend"] == "mmdet" and bool(checkpoint) == bool(m["random_weights"]):
        raise ValueError("params.yaml detect.mmdet: give a checkpoint (path or URI) or random_weights: true "
                         f"(tests and demos only), not {'both' if checkpoint else 'neither'}")
    return DetectOptions(
        backend=p["backend"], score_floor=float(p["score_floor"]), max_per_image=int(p["max_per_image"]),
        mmdet=DetectorSpec(config=P.named_file(m["config_file"]) or m["config"], checkpoint=checkpoint or "random",
                           test_scale=m["test_scale"] or None, trusted_checkpoint=m["trusted_checkpoint"],
                           allow_unmapped_classes=m["allow_unmapped_classes"], seed=m["seed"],
                           score_floor=float(p["score_floor"]), max_per_image=int(p["max_per_image"])),
        precomputed=PrecomputedSpec(q["format"], P.named_file(q["path"]), q["label_space"]),
        oracle=OracleConfig(seed=int(o["seed"]), jitter=float(o["jitter"]), drop_rate=float(o["drop_rate"]),
                            false_positives=float(o["false_positives"])))


def run(images_path: str, pairs_path: str, out_path: str, rejects_path: str, p: dict,
        where: dict | None = None, max_reject_fraction: float = 0.05) -> dict:
    """Detects (or imports) the boxes of the ``split`` images; returns the metadata written.

    Args:
        p: the validated ``detect`` params; ``where``: ``placement.detect`` plus ``ray_address``.
    """
    result = detect_split(images_path, pairs_path, p["split"], options(p), Placement.from_dict(where or {}),
                          max_reject_fraction, rejects_path)
    for line in result.summary:
        log.warning("%s", line)
    storage.write_parquet(result.rejects, rejects_path, metadata={"stage": "detect"})
    storage.write_parquet(result.table, out_path, metadata=result.meta)
    log.info("wrote %d detections of %s images to %s (%d reject rows in %s)", result.table.num_rows,
             result.meta.get("images_used", 0), out_path, result.rejects.num_rows, rejects_path)
    return result.meta


def main(argv: list[str] | None = None) -> dict:
    ap = P.parser(__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="images.parquet of the prepare stage")
    ap.add_argument("--pairs", required=True, help="pairs.parquet (ground truth; read by the oracle only)")
    ap.add_argument("--out", required=True, help="detections.parquet to write")
    ap.add_argument("--rejects", required=True, help="rejects report to write")
    ap.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    args = ap.parse_args(argv)
    P.setup_logging()
    where = P.placement("detect", args.params)
    if args.ray_address:
        where["ray_address"] = args.ray_address
    return run(args.images, args.pairs, args.out, args.rejects, P.load("detect", args.params), where,
               P.checks(args.params)["max_reject_fraction"])


if __name__ == "__main__":
    console.run(main, "detect")

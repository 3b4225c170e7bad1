"""Regional scoring over many images on a Ray Data actor pool (like the detect stage's pool).

The driver turns detections into pairs (cheap NumPy, so reject counts are exact and global) and ships
one row per image with pairs; each actor loads the classifier once, decodes its images (JPEG decoding
scales with the pool), runs the shared-prefix masked scoring on a batch and returns HOI_DETECTIONS rows.
One actor per GPU when the cluster has GPUs, else ``actors`` CPU actors of ``cpus_per_actor`` CPUs.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from pipeline import schemas
from pipeline.data.images import ImageError, read_rgb
from pipeline.distributed import map_with_actor_pool

from .pairs import PairParams, Pairs, make_pairs

log = logging.getLogger(__name__)
PAIR_COLUMNS = ("human_box", "object_box", "human_score", "object_score", "object_label")


def image_pairs(images: pa.Table, detections: pa.Table, params: PairParams) -> tuple[pa.Table, dict]:
    """One row per image that has at least one pair: image_id, uri, width, height and the pair lists.

    Returns:
        (table, counts): counts of images, images without pairs, pairs and rejected boxes by reason.

    Raises:
        ValueError: detections of an image absent from ``images``, or NaN/out-of-range scores.
    """
    detections = schemas.conform(detections, schemas.DETECTIONS, "detections")
    known = set(images["image_id"].to_pylist())
    ids = detections["image_id"].to_numpy()
    unknown = sorted(set(np.unique(ids).tolist()) - known)
    if unknown:
        raise ValueError(f"detections: image_id(s) {unknown[:5]} are not among the {len(known)} images of "
                         f"images.parquet (split mismatch between detect and score_regions?)")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    boxes = np.asarray(detections["box"].combine_chunks().flatten(), np.float32).reshape(-1, 4)[order]
    labels = detections["label"].to_numpy()[order]
    scores = detections["score"].to_numpy(zero_copy_only=False)[order]
    starts = dict(zip(*np.unique(ids, return_index=True)))
    counts_by_id = dict(zip(*np.unique(ids, return_counts=True)))
    rows, rejected = {k: [] for k in ("image_id", "uri", "width", "height", *PAIR_COLUMNS)}, Counter()
    n_pairs = 0
    for r in tqdm(images.select(["image_id", "uri", "width", "height"]).to_pylist(), desc="pairs",
                  unit="img", mininterval=2.0):
        s = starts.get(r["image_id"], 0)
        sl = slice(s, s + counts_by_id.get(r["image_id"], 0))
        p = make_pairs(boxes[sl], labels[sl], scores[sl], r["width"], r["height"], params, r["image_id"])
        rejected.update(p.rejected)
        if not len(p):
            continue
        n_pairs += len(p)
        for k in ("image_id", "uri", "width", "height"):
            rows[k].append(r[k])
        for k in PAIR_COLUMNS:
            rows[k].append(np.asarray(getattr(p, k)).reshape(-1).tolist())
    types = {"image_id": pa.int64(), "uri": pa.string(), "width": pa.int32(), "height": pa.int32(),
             "human_box": pa.list_(pa.float32()), "object_box": pa.list_(pa.float32()),
             "human_score": pa.list_(pa.float32()), "object_score": pa.list_(pa.float32()),
             "object_label": pa.list_(pa.int16())}
    table = pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})
    counts = {"images": images.num_rows, "images_with_pairs": table.num_rows,
              "images_without_pairs": images.num_rows - table.num_rows, "pairs": n_pairs,
              "boxes": {k: int(v) for k, v in sorted(rejected.items())}}
    return table, counts


def pairs_of_row(row: dict) -> Pairs:
    return Pairs(human_box=np.asarray(row["human_box"], np.float32).reshape(-1, 4),
                 object_box=np.asarray(row["object_box"], np.float32).reshape(-1, 4),
                 human_score=np.asarray(row["human_score"], np.float32),
                 object_score=np.asarray(row["object_score"], np.float32),
                 object_label=np.asarray(row["object_label"], np.int64))


def load_image(uri: str, width: int, height: int):
    """The RGB PIL image; raises naming the file when it is missing, broken or not the annotated size."""
    try:
        return read_rgb(uri, (width, height))
    except ImageError as e:  # a wrong size would put the boxes off the model's patches
        raise ValueError(f"score_regions: cannot use image {uri}: {e}") from e


class ScoreActor:
    """Ray Data callable class: a pyarrow batch of images with pairs -> HOI_DETECTIONS rows."""

    def __init__(self, checkpoint: str, score_params: dict, device: str, threads: int):
        import torch

        from pipeline.model import inference_transform, load_checkpoint

        from .scorer import RegionScorer, ScoreParams

        torch.set_num_threads(max(1, threads))
        model = load_checkpoint(checkpoint, device)
        self.transform = inference_transform(model.config)
        self.scorer = RegionScorer(model, ScoreParams(**score_params))

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        rows = batch.to_pylist()
        images = torch.stack([self.transform(load_image(r["uri"], r["width"], r["height"])) for r in rows])
        return self.scorer.score([r["image_id"] for r in rows], images, [pairs_of_row(r) for r in rows],
                                 [(float(r["width"]), float(r["height"])) for r in rows])


def score_images(table: pa.Table, checkpoint: str, score_params, actors: int = 1, cpus_per_actor: int = 1,
                 batch_size: int = 8, device: str = "auto") -> tuple[pa.Table, dict]:
    """Runs :class:`ScoreActor` over ``table`` (from :func:`image_pairs`); Ray must be initialized.

    Returns:
        (HOI_DETECTIONS sorted by image_id then descending score, metadata: actors and device).
    """
    import ray

    if table.num_rows == 0:
        return schemas.HOI_DETECTIONS.empty_table(), {"actors": 0, "device": "none"}
    ds, size, use_gpu = map_with_actor_pool(
        table, ScoreActor, {"checkpoint": checkpoint, "score_params": dataclasses.asdict(score_params)},
        actors=actors, cpus_per_actor=cpus_per_actor, batch_size=batch_size, device=device,
        param="score_regions.device")
    log.info("scoring %d images with %d %s actor(s)", table.num_rows, size, "GPU" if use_gpu else "CPU")
    parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    out = pa.concat_tables(parts) if parts else schemas.HOI_DETECTIONS.empty_table()
    out = schemas.conform(out, schemas.HOI_DETECTIONS, "hoi_detections")
    out = out.take(pc.sort_indices(out, [("image_id", "ascending"), ("score", "descending")]))
    return out, {"actors": size, "device": "cuda" if use_gpu else "cpu"}

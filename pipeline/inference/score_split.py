"""The score_regions stage's work: every human-object pair of a split's detections, scored, as tables.

Boxes come from the detect stage's table; images with detections go to the regional-scoring predictor
(:mod:`pipeline.inference.pair_predictor`) on the engine's pool; its (pair, class) rows become
``hoi_detections``. Unreadable images and unusable boxes are reject rows, checked against
``checks.max_reject_fraction`` (:func:`pipeline.rejects.check_loss`) before anything is written.
Not applicable (an empty table whose metadata says why): a model whose classes involve no COCO object
(e.g. MPII activities), or detections that were themselves not applicable.

The driver reads the model's ``config.json`` only; each actor loads the checkpoint once. The attention
figures (paper Fig. 4) are drawn by the actors from the forward pass that scored the pairs: the driver names
the images they will likely be of (the first ``attention_maps`` images, by id, whose boxes make a pair) and
writes the PNGs it gets back; it never decodes an image nor runs the model.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schemas, storage
from pipeline.detection.boxes import CLIPPED, rejects_table
from pipeline.regions.pairs import PairParams, make_pairs
from pipeline.regions.scorer import ScoreParams
from pipeline.datasets.splits import read_split
from pipeline.model import read_model_config
from pipeline.rejects import check_loss
from pipeline.precision import effective

from pipeline.inference.engine import Placement, SplitResult, shippable
from pipeline.inference.pair_predictor import box_counts, detection_rows, hoi_table, score_rows

log = logging.getLogger(__name__)
TITLE = "image {image_id}: {name} (score {score:.3f})"   # of an attention figure


def not_applicable_reason(config, detections_path: str) -> str:
    """Why HOI detection does not apply ("" when it does)."""
    from pipeline.classes.space import model_classes

    classes = model_classes(config)
    if not classes.has_objects:
        return (f"the model's {len(classes)} classes involve no COCO object (e.g. {classes.names[:3]}): "
                "no human-object box pair can score them")
    upstream = storage.parquet_metadata(detections_path).get("not_applicable") if storage.is_local(detections_path) else None
    return f"no detections: {upstream}" if upstream else ""


def score_split(model_dir: str, detections_path: str, images_path: str, split: str, pair_params: PairParams,
                score_params: ScoreParams, placement: Placement, max_reject_fraction: float,
                plots_dir: str | Path | None = None, attention_maps: int = 0, rejects_path: str = "") -> SplitResult:
    """Scores every pair of the ``split`` images' detections.

    Args:
        plots_dir: existing folder for ``attention_maps`` Fig. 4 plots, ``image_<id>.png``: the top pair
            of each of the first ``attention_maps`` images (by id) that have HOI detections.
        rejects_path: where the stage writes the rejects (named in the messages).

    Raises:
        FileNotFoundError / ValueError: a missing checkpoint, an empty split, bad detections (named).
        pipeline.rejects.DataLossError: too many images or boxes rejected.
    """
    cfg = read_model_config(model_dir)
    meta = {"stage": "score_regions", "model": cfg.model_name, "image_size": cfg.image_size,
            "num_classes": cfg.num_classes, "demo_only": bool(cfg.metadata.get("demo_only", False)),
            "pair_params": dataclasses.asdict(pair_params), "scoring": dataclasses.asdict(score_params)}
    if meta["demo_only"]:
        meta["note"] = "DEMO ONLY: tiny random-init classifier; scores carry no meaning"
    reason = not_applicable_reason(cfg, detections_path)
    if reason:
        log.warning("score_regions: not applicable: %s; writing an empty hoi_detections table", reason)
        return SplitResult(schemas.HOI_DETECTIONS.empty_table(), rejects_table([]),
                           {**meta, "not_applicable": reason, "rows": 0}, [f"not applicable: {reason}"])
    images = read_split(images_path, split, "score_regions.split")
    rows = detection_rows(images, storage.read_parquet(detections_path))
    n_maps = attention_maps if plots_dir is not None else 0
    run = score_rows(rows, shippable(model_dir), pair_params, score_params, placement, ray=True,
                     attention=likely_figures(rows, pair_params, n_maps), attention_title=TITLE)
    table = hoi_table(run.table)
    counts = box_counts(run.table, str(detections_path))
    summary = [check_loss(f"{split} images with detections", rows.num_rows, [r[2] for r in run.rejects],
                          max_reject_fraction, rejects_path),
               check_loss(f"detection boxes of {detections_path}", counts.boxes, [r[2] for r in counts.rejects],
                          max_reject_fraction, rejects_path)]
    by_reason: dict[str, int] = {}
    for r in counts.rejects:
        by_reason[r[2]] = by_reason.get(r[2], 0) + 1
    if counts.clipped:
        by_reason[CLIPPED] = counts.clipped
    with_pairs = int(pc.sum(pc.greater(run.table["pairs"], 0)).as_py() or 0) if run.table.num_rows else 0
    meta.update({"images": images.num_rows, "images_with_detections": rows.num_rows,
                 "images_rejected": len(run.rejects), "images_with_pairs": with_pairs,
                 "images_without_pairs": images.num_rows - with_pairs,
                 "pairs": int(pc.sum(run.table["pairs"]).as_py() or 0) if run.table.num_rows else 0,
                 "boxes": dict(sorted(by_reason.items())), "actors": run.info["actors"],
                 "device": run.info["device"], "precision": effective(placement.precision, run.info["device"]),
                 "rows": table.num_rows})

    def draw_again(ids: list[int]) -> pa.Table:
        some = rows.filter(pc.is_in(rows["image_id"], pa.array(ids, pa.int64())))
        return score_rows(some, shippable(model_dir), pair_params, score_params, placement, ray=True,
                          attention=ids, attention_title=TITLE).table

    meta["attention_maps"] = write_figures(run.table, n_maps, plots_dir, draw_again)
    return SplitResult(table, rejects_table([*run.rejects, *counts.rejects]), meta, [s for s in summary if s])


def likely_figures(rows: pa.Table, pair_params: PairParams, n: int) -> list[int]:
    """The first ``n`` image ids of ``rows`` (detection rows, sorted by id) whose boxes make a pair: the
    images whose figures the actors draw. An image read as its annotated size (the pool checks it) gets
    exactly these pairs; one that cannot be read or scores no class gets none, and
    :func:`write_figures` then draws the next images in a second, small run."""
    ids = []
    if n <= 0:
        return ids
    for r in rows.select(["image_id", "width", "height", "boxes", "labels", "scores"]).to_pylist():
        boxes = np.asarray(r["boxes"] or [], np.float32).reshape(-1, 4)
        if len(make_pairs(boxes, r["labels"] or [], r["scores"] or [], r["width"], r["height"], pair_params,
                          r["image_id"])):
            ids.append(r["image_id"])
            if len(ids) == n:
                break
    return ids


def write_figures(result: pa.Table, n: int, plots_dir: str | Path | None, rerun) -> int:
    """Writes ``image_<id>.png`` of the first ``n`` images (by id) with HOI detections; returns how many.

    Args:
        result: the predictor's rows (``hoi`` and ``attention`` PNG bytes per image).
        rerun: image ids -> a predictor result with their figures, for images the first run did not
            draw (:func:`likely_figures` missed them: rare).
    """
    if n <= 0 or plots_dir is None or not result.num_rows:
        return 0
    has_rows = pc.greater(pc.list_value_length(result["hoi"]), 0)
    result = result.filter(pc.fill_null(has_rows, False))
    chosen = result["image_id"].to_pylist()[:n]
    pngs = {i: b for i, b in zip(chosen, result["attention"].to_pylist()[:n]) if b is not None}
    missing = [i for i in chosen if i not in pngs]
    if missing:
        log.info("score_regions: drawing the attention figures of images %s in a second run", missing)
        extra = rerun(missing)
        pngs.update((i, b) for i, b in zip(extra["image_id"].to_pylist(), extra["attention"].to_pylist())
                    if b is not None)
    for image_id in chosen:
        if image_id not in pngs:
            raise RuntimeError(f"score_regions: no attention figure came back for image {image_id}")
        (Path(plots_dir) / f"image_{image_id}.png").write_bytes(pngs[image_id])
    return len(chosen)

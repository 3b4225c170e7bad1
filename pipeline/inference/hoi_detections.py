"""The score_regions stage's work: every human-object pair of a split's detections, scored, as tables.

Boxes come from the detect stage's table; images with detections go to the regional-scoring predictor
(:mod:`pipeline.inference.regions`) on the engine's pool; its (pair, class) rows become
``hoi_detections``. Unreadable images and unusable boxes are reject rows, checked against
``checks.max_reject_fraction`` (:func:`pipeline.rejects.check_loss`) before anything is written.
Not applicable (an empty table whose metadata says why): a model whose classes involve no COCO object
(e.g. MPII activities), or detections that were themselves not applicable.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schemas, storage
from pipeline.detection.boxes import CLIPPED, rejects_table
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams
from pipeline.rejects import check_loss

from .engine import Placement, shippable
from .regions import box_counts, detection_rows, hoi_table, score_rows

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SplitScores:
    """What the stage writes: HOI_DETECTIONS, REJECTS, the metadata, and the summary lines to print."""
    detections: pa.Table
    rejects: pa.Table
    meta: dict
    summary: list[str]


def read_model_config(model_dir: str):
    """The checkpoint's :class:`pipeline.model.ModelConfig` (fails fast, before Ray, naming the file)."""
    from pipeline.model import ModelConfig

    config_uri = storage.join(model_dir, "config.json")
    if not storage.exists(config_uri):
        raise FileNotFoundError(f"{config_uri} does not exist: run the train stage first (--model {model_dir})")
    with storage.open_file(config_uri) as f:
        return ModelConfig.from_dict(json.load(f), source=config_uri)


def not_applicable_reason(config, detections_path: str) -> str:
    """Why HOI detection does not apply ("" when it does)."""
    from pipeline.classes import model_classes

    classes = model_classes(config)
    if not classes.has_objects:
        return (f"the model's {len(classes)} classes involve no COCO object (e.g. {classes.names[:3]}): "
                "no human-object box pair can score them")
    upstream = storage.parquet_metadata(detections_path).get("not_applicable") if storage.is_local(detections_path) else None
    return f"no detections: {upstream}" if upstream else ""


def score_split(model_dir: str, detections_path: str, images_path: str, split: str, pair_params: PairParams,
                score_params: ScoreParams, placement: Placement, max_reject_fraction: float,
                plots_dir: str | Path | None = None, attention_maps: int = 0, rejects_path: str = "") -> SplitScores:
    """Scores every pair of the ``split`` images' detections.

    Args:
        plots_dir: existing folder for ``attention_maps`` Fig. 4 plots (top pair of the first images).
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
        return SplitScores(schemas.HOI_DETECTIONS.empty_table(), rejects_table([]),
                           {**meta, "not_applicable": reason, "rows": 0}, [f"not applicable: {reason}"])
    images = storage.read_parquet(images_path, columns=["image_id", "split", "file_name", "uri", "width", "height"])
    images = storage.absolute_uris(images.filter(pc.equal(images["split"], split)))
    if images.num_rows == 0:
        raise ValueError(f"{images_path} has no images of split {split!r} (score_regions.split)")
    rows = detection_rows(images, storage.read_parquet(detections_path))
    run = score_rows(rows, shippable(model_dir), pair_params, score_params, placement, ray=True)
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
                 "device": run.info["device"], "rows": table.num_rows})
    if plots_dir is not None and attention_maps > 0 and table.num_rows:
        from pipeline.attention_maps import top_pair_maps
        from pipeline.model import load_checkpoint

        meta["attention_maps"] = top_pair_maps(load_checkpoint(model_dir, "cpu"), table, images, plots_dir,
                                               attention_maps, score_params.patch_rule, score_params.min_fraction)
    else:
        meta["attention_maps"] = 0
    return SplitScores(table, rejects_table([*run.rejects, *counts.rejects]), meta, [s for s in summary if s])

"""The predict stage's work: image-level scores (IMAGE_SCORES) of every image of one split, on Ray."""
from __future__ import annotations

import json

import pyarrow as pa

from pipeline import schemas
from pipeline.datasets.splits import read_split
from pipeline.placement import Placement
from pipeline.inference.image_predictor import score_images
from pipeline.model import load_checkpoint
from pipeline.precision import effective


def predict_split(images_path: str, checkpoint: str, split: str, placement: Placement) -> tuple[pa.Table, dict]:
    """IMAGE_SCORES of every image of ``split`` (the predict stage), on Ray, and the metadata to write.

    Raises:
        FileNotFoundError / ValueError: a bad checkpoint (checked here, before Ray starts), no image in the
            split, or an image that cannot be read (prepare checked them: every one must score).
    """
    cfg = load_checkpoint(checkpoint).config  # fail fast, in the driver, on a bad checkpoint
    images = read_split(images_path, split, "predict.split", columns=None)
    run = score_images(images.select(["image_id", "uri", "width", "height"]), checkpoint, placement, ray=True)
    if run.rejects:
        raise ValueError(f"predict: {len(run.rejects)} of {images.num_rows} {split} images cannot be read "
                         f"(the prepare stage checked them: did the files change?); first: {run.rejects[:3]}")
    meta = {"model": cfg.model_name, "text_model": cfg.text_model, "image_size": cfg.image_size,
            "num_classes": cfg.num_classes, "split": split, "scores": "logits",
            "demo_only": json.dumps(bool(cfg.metadata.get("demo_only", False))),
            "actors": run.info["actors"], "device": run.info["device"],
            "precision": effective(placement.precision, run.info["device"])}
    return schemas.conform(run.table, schemas.IMAGE_SCORES, "image_scores"), meta

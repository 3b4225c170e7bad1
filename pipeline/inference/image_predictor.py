"""Image-level scores: the classifier's C logits per image (the predict stage and ``defr classify``).

Preprocessing is the model's own :func:`pipeline.model.inference_transform` (run in the pool's decode
threads), so a score here equals the model called directly on the same image.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.placement import Placement
from pipeline.inference.engine import PoolRun, run_predictor, shippable


class ImageScorer:
    """Predictor: image -> ``scores`` (the model's logits, float32 [C])."""

    schema = pa.schema([("scores", pa.list_(pa.float32()))])

    def __init__(self, checkpoint: str, device: str = "cpu", precision: str = "auto"):
        import torch

        from pipeline.model import inference_transform, load_checkpoint
        from pipeline.precision import resolve

        resolve(precision, device)  # an unknown precision fails here, not at the first batch
        self.device, self.precision = torch.device(device), precision
        self.model = load_checkpoint(checkpoint, self.device)
        self.transform = inference_transform(self.model.config)

    def prepare(self, image, row: dict):
        return self.transform(image)

    def __call__(self, items: list, rows: list[dict]) -> pa.Table:
        import torch

        from pipeline.precision import autocast, full_precision

        x = torch.stack(items).to(self.device)
        head = full_precision(self.model.classify, next(self.model.parameters()).dtype)
        with torch.inference_mode(), autocast(self.device, self.precision):
            scores = head(self.model.pooled(x)).float().cpu().numpy()
        n = scores.shape[1]
        offsets = pa.array(np.arange(0, len(scores) * n + 1, n, dtype=np.int32))
        return pa.table({"scores": pa.ListArray.from_arrays(offsets, pa.array(scores.reshape(-1), pa.float32()))})


def score_images(images: pa.Table, checkpoint: str, placement: Placement, *, ray: bool,
                 upright: bool = False) -> PoolRun:
    """Logits of every readable image of ``images`` (image_id, uri, optional width / height), at the
    placement's precision."""
    kwargs = {"checkpoint": shippable(checkpoint), "precision": placement.precision}
    return run_predictor(images, ImageScorer, kwargs, placement, ray=ray, upright=upright, desc="image scores")

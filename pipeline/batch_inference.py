"""Image-level HOI scores with Ray Data: JPEG decoding in CPU tasks, the model in a fixed actor pool.

Decoding/resizing runs as Ray tasks (``uint8`` [B, S, S, 3], 4x smaller than float pixels in the object
store) and streams into ``actors`` model replicas, each holding one model (one GPU each when
``num_gpus_per_actor`` > 0), so the model never waits on JPEG decoding when there are spare CPUs.
"""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)


class Decode:
    """Ray Data batch fn: ``uri`` -> ``pixels`` uint8 [B, S, S, 3], the same squash-resize as
    :func:`pipeline.model.inference_transform` (PIL bicubic; normalisation happens on the model side)."""

    def __init__(self, image_size: int):
        self.size = int(image_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        from pipeline.training.dataset import load_image

        pixels = np.stack([np.asarray(load_image(str(u)).resize((self.size, self.size), Image.BICUBIC))
                           for u in batch["uri"]])
        return {"image_id": batch["image_id"], "pixels": pixels}


class Scorer:
    """Ray Data callable class: one model per actor; ``pixels`` -> ``scores`` (the C logits)."""

    def __init__(self, model_dir: str):
        import torch

        from pipeline.model import load_checkpoint

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_checkpoint(model_dir, self.device)
        cfg = self.model.config
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch["pixels"])).to(self.device)
        x = (x.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.device.type == "cuda"):
            scores = self.model(x).float().cpu().numpy()
        return {"image_id": batch["image_id"], "scores": scores}


def predict_scores(images: pa.Table, model_dir: str, image_size: int, batch_size: int = 32, actors: int = 1,
                   num_gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0) -> pa.Table:
    """``image_id``, ``scores`` (float32 logits) for every row of ``images`` (needs ``image_id``, ``uri``),
    sorted by ``image_id``. Ray must be initialized (``pipeline.distributed.init_ray``)."""
    import ray

    ds = ray.data.from_arrow(images.select(["image_id", "uri"]))
    ds = ds.map_batches(Decode(image_size), batch_size=batch_size, num_cpus=1)  # stateless: Ray tasks
    ds = ds.map_batches(Scorer, fn_constructor_args=(model_dir,), batch_size=batch_size,
                        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus_per_actor,
                        num_cpus=cpus_per_actor)
    ids, scores = [], []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids.append(batch["image_id"])
        scores.append(np.asarray(batch["scores"], dtype=np.float32))
    if not ids:
        raise ValueError("no images to score")
    ids, scores = np.concatenate(ids), np.concatenate(scores)
    order = np.argsort(ids, kind="stable")
    n_classes = scores.shape[1]
    flat = pa.array(scores[order].reshape(-1), pa.float32())
    return pa.table({"image_id": pa.array(ids[order], pa.int64()),
                     "scores": pa.ListArray.from_arrays(pa.array(np.arange(0, len(ids) * n_classes + 1,
                                                                           n_classes, dtype=np.int32)), flat)})

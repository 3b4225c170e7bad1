"""Tiny inputs of the training recipe for tests that run it in-process (pipeline.training.recipe.setup):
a few random JPEGs in an images table, and a loop config of the tiny random ViT at 32 px."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from pipeline import schemas
from pipeline.model import ModelConfig

CLASSES = 5


def tiny_images(folder: Path, n_train: int = 12, n_val: int = 4, seed: int = 0) -> pa.Table:
    """An images table (absolute URIs) of ``n_train`` + ``n_val`` random 70 x 50 JPEGs with random labels."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in schemas.IMAGES.names}
    for i in range(n_train + n_val):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
        positive = rng.random(CLASSES) < 0.3
        rows["image_id"].append(i)
        rows["split"].append("train" if i < n_train else "val")
        rows["file_name"].append(path.name)
        rows["uri"].append(str(path))
        rows["width"].append(70)
        rows["height"].append(50)
        rows["positives"].append(np.flatnonzero(positive).tolist())
        rows["negatives"].append(np.flatnonzero(~positive).tolist())
        rows["ambiguous"].append([])
    return schemas.conform(pa.table(rows), schemas.IMAGES, "images")


def tiny_config(**overrides) -> dict:
    """A loop config (what launcher.loop_config builds) for the tiny random ViT; ``overrides`` replace keys."""
    model = ModelConfig(image_size=32, num_classes=CLASSES, init="random", text_dim=8)
    return {"text_embeddings": None, "model": model.to_dict(), "loss": "lse_sign", "ambiguous_as": "negative",
            "unknown_as": "negative", "lr": 1e-2, "epochs": 2, "restart_epochs": 1, "global_batch": 4,
            "micro_batch": 2, "min_per_class": 0, "crop_scale": 0.5, "jitter": 0.4, "augment": "pil", "seed": 0,
            "loader_workers": 0, "cpus_per_worker": 1, "precision": "auto", "compile": False} | overrides

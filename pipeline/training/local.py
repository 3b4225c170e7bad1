"""The same recipe in one plain process (no Ray, no DDP): the baseline of the Ray Train overhead benchmark,
the demo ablations and the "does it learn" test. Not checkpointed; use the train stage for real runs."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.metrics.classification import hico_classification_map
from pipeline.model import DEFRClassifier, ModelConfig
from pipeline.training.recipe import _unwrap, setup, train_epoch, validate


def fit_local(images: pa.Table, text: np.ndarray | None, model_config: ModelConfig,
              recipe: dict[str, Any]) -> tuple[DEFRClassifier, list[dict[str, Any]]]:
    """Trains like :func:`pipeline.training.recipe.train_loop_per_worker` with one worker (``recipe``: the
    train params and ``micro_batch``; images with absolute URIs).

    Returns the model after the last epoch and the per-epoch history (train_loss, val_map,
    images_per_s_per_worker, data_wait, and val_map_shuffled: the same scores against row-shuffled labels).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = {**recipe, "text_embeddings": text, "model": model_config.to_dict()}
    w = setup(cfg, images, 0, 1, device)
    shuffled = w.val_labels[np.random.default_rng(0).permutation(len(w.val_labels))]
    history = []
    for epoch in range(recipe["epochs"]):
        stats = train_epoch(w, cfg, epoch, 0)
        scores = validate(w, cfg)
        history.append({"epoch": epoch, **stats, "val_map": hico_classification_map(scores, w.val_labels).map,
                        "val_map_shuffled": hico_classification_map(scores, shuffled).map})
    return _unwrap(w.model), history

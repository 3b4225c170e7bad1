"""The same recipe in one plain process (no Ray, no DDP): the baseline of the Ray Train overhead benchmark,
the demo ablations and the "does it learn" test. Not checkpointed; use the train stage for real runs."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.training.losses import make_loss
from pipeline.metrics.classification import hico_classification_map
from pipeline.model import DEFRClassifier, ModelConfig, build_model, inference_transform
from pipeline.training.dataset import ImageDataset, split_samples
from pipeline.training.recipe import _loader, _train_epoch, _validate, train_data
from pipeline.training.sampling import oversample


def fit_local(images: pa.Table, text: np.ndarray | None, model_config: ModelConfig,
              recipe: dict[str, Any]) -> tuple[DEFRClassifier, list[dict[str, Any]]]:
    """Trains like :func:`pipeline.training.recipe.train_loop_per_worker` with one worker.

    Returns the model after the last epoch and the per-epoch history (train_loss, val_map,
    images_per_s_per_worker, and val_map_shuffled: the same scores against row-shuffled labels).
    """
    torch.manual_seed(recipe["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(model_config, text, seed=recipe["seed"]).to(device)
    cfg = model.config
    c = cfg.num_classes
    train_uris, _, train_t = split_samples(images, "train", c, recipe["ambiguous_as"], recipe["unknown_as"])
    val_uris, val_labels, val_t = split_samples(images, "val", c, recipe["ambiguous_as"], recipe["unknown_as"])
    val_set = ImageDataset(val_uris, val_t, inference_transform(cfg))
    loss_fn = make_loss(recipe["loss"], torch.from_numpy(train_t.astype(np.float32)))
    accum = max(1, recipe["global_batch"] // recipe["batch_size"])
    steps = -(-len(oversample(train_t, recipe["min_per_class"], recipe["seed"])) // (recipe["batch_size"] * accum))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, int(recipe["restart_epochs"] * steps)))
    shuffled = val_labels[np.random.default_rng(0).permutation(len(val_labels))]
    history = []
    for epoch in range(recipe["epochs"]):
        idx = oversample(train_t, recipe["min_per_class"], recipe["seed"] + epoch)
        data, collate, augment = train_data(train_uris, train_t, cfg, recipe, idx, epoch, 0, device)
        loss, ips = _train_epoch(model, _loader(data, recipe, collate=collate), loss_fn, optimizer, scheduler,
                                 accum, device, recipe, 0, epoch, augment)
        scores = _validate(model, val_set, recipe, device, len(val_uris), c)
        history.append({"epoch": epoch, "train_loss": loss, "images_per_s_per_worker": ips,
                        "val_map": hico_classification_map(scores, val_labels).map,
                        "val_map_shuffled": hico_classification_map(scores, shuffled).map})
    return model, history

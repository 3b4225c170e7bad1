"""Ray Tune sweeps over the Ray Train recipe (the paper's ablations: gamma, lr, loss, init, ...).

Ray Train V2 pattern: each Tune trial runs a small driver function that builds a ``TorchTrainer`` and
fits it; ``TuneReportCallback`` forwards the workers' reports to Tune (``Tuner(trainer)`` is deprecated).

For searches on a cluster. The trials stay out of ``dvc exp show`` (a trial has validation mAP only and no
workspace to commit); the ablations a paper reports are ``dvc exp run --queue`` grids (docs/training.md).
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

MODEL_FIELDS = ("gamma", "init", "image_size", "classifier_position", "model_name", "pretrained")


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``loop_config`` with recipe keys (``lr``, ``loss``, ...) or model fields replaced."""
    cfg = copy.deepcopy(config)
    for key, value in overrides.items():
        if key in MODEL_FIELDS:
            cfg["model"][key] = value
        elif key in cfg and key not in ("model", "images", "text_embeddings", "fault"):
            cfg[key] = value
        else:
            raise KeyError(f"sweep key {key!r}: expected a recipe key {sorted(k for k in cfg if k != 'model')} "
                           f"or a model field {MODEL_FIELDS}")
    return cfg


def grid(space: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of a {key: [values]} grid (what ``tune.grid_search`` expands to)."""
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def sweep(config: dict[str, Any], space: dict[str, list], name: str, storage_path: str, num_workers: int,
          use_gpu: bool, max_concurrent: int = 1, cpus_per_worker: float = 1):
    """Runs one Ray Train run per grid point under Ray Tune; returns the ``ResultGrid``.

    The trial metric is ``best_val_map`` (max). Each trial's train run is named ``<name>-<trial id>`` under
    ``storage_path``, so its checkpoints stay inspectable (and resumable) like a train-stage run.
    """
    import ray.tune as tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipeline import storage
    from pipeline.training.launcher import make_trainer

    for key in space:  # fail before any trial starts
        apply_overrides(config, {key: space[key][0]})

    def driver(overrides: dict[str, Any]) -> None:
        trial = tune.get_context().get_trial_id()
        trainer = make_trainer(apply_overrides(config, overrides), num_workers, use_gpu, f"{name}-{trial}",
                               storage_path, max_failures=1, cpus_per_worker=cpus_per_worker,
                               callbacks=[TuneReportCallback()])
        trainer.fit()

    tune_fs, tune_path = storage.arrow_filesystem(storage_path, "placement.train.storage_path")
    tuner = tune.Tuner(
        tune.with_resources(driver, {"CPU": 0.01}),  # the driver only waits; the workers hold the CPUs
        param_space={k: tune.grid_search(v) for k, v in space.items()},
        tune_config=tune.TuneConfig(metric="best_val_map", mode="max", max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name=name, storage_path=tune_path, storage_filesystem=tune_fs),
    )
    return tuner.fit()

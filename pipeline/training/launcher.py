"""Driver side of training: the Ray Train ``TorchTrainer`` from plain settings, and the export of its result.

A re-run with the same ``run_name`` and ``storage_path`` resumes from that run's last checkpoint (Ray Train
V2 restores by (storage_path, name)); a dead worker restarts the worker group from the last checkpoint up
to ``max_failures`` times, a preempted node (spot) as often as it happens, from the checkpoint saved on its
notice. :func:`forwarded_reports` hands each epoch's report to a function in this
process while the run goes (the train stage's live metrics).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.model import ModelConfig

log = logging.getLogger(__name__)

FAULT_ENV = "DEFR_FAULT_INJECTION"  # "rank:epoch:marker_path" - test hook, kills one worker once


def loop_config(images: str, text_embeddings: np.ndarray | None, model: ModelConfig,
                **recipe: Any) -> dict[str, Any]:
    """The ``train_loop_config`` of :func:`pipeline.training.recipe.train_loop_per_worker`."""
    cfg = {"images": str(Path(images).resolve()) if storage.is_local(images) else images,
           "text_embeddings": text_embeddings, "model": model.to_dict(), "fault": None,
           "uri_base": os.getcwd()}
    cfg.update(recipe)
    fault = os.environ.get(FAULT_ENV)
    if fault:
        rank, epoch, marker = fault.split(":", 2)
        cfg["fault"] = {"rank": int(rank), "epoch": int(epoch), "marker": marker}
    return cfg


def make_trainer(config: dict[str, Any], num_workers: int, use_gpu: bool, run_name: str,
                 storage_path: str, max_failures: int, cpus_per_worker: float = 1,
                 callbacks: list | None = None, loop: Callable[[dict], None] | None = None):
    """A ``TorchTrainer`` (DDP; gloo on CPU, NCCL on GPU) for the DEFR recipe (``loop``: another per-worker
    function, for tests and benchmarks that run parts of it).

    ``storage_path`` is a local directory or any URI :mod:`pipeline.storage` opens (``s3://``, ``gs://``,
    ``az://``); checkpoints go there through :func:`pipeline.storage.arrow_filesystem`. Two of them stay:
    the latest (to resume) and the last whose weights were the best so far (to export), which may be the
    same one.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.training.recipe import HOLDS_BEST, train_loop_per_worker

    # A URI gets this project's fsspec filesystem (endpoint override, timeouts, no stale listings) wrapped
    # for pyarrow, after a probe that fails in seconds on a wrong credential or bucket; a local path None.
    filesystem, storage_path = storage.arrow_filesystem(storage_path, "placement.train.storage_path")
    resources = {"CPU": cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer_class = _trainer_without_state_api(TorchTrainer) if _no_dashboard_here() else TorchTrainer
    return trainer_class(
        loop or train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=storage_path, storage_filesystem=filesystem,
                             # max_failures: worker and node faults. Ray's default retries a worker group
                             # that cannot start forever; the driver checked resources, so twice is plenty.
                             # A reclaimed spot node is no fault: preemptions are retried without limit
                             # (max_preemption_failures=-1), from the checkpoint the recipe saves on the
                             # notice; the ranks that stay may finish that checkpoint without the leaving one.
                             failure_config=FailureConfig(max_failures=max_failures, controller_failure_limit=2,
                                                          max_preemption_failures=-1,
                                                          relax_collectives_on_preemption=True),
                             # Ray Train always keeps the latest checkpoint, and num_to_keep more by score:
                             # the best weights are never copied into a later checkpoint (recipe.HOLDS_BEST).
                             checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=HOLDS_BEST,
                                                                checkpoint_score_order="max"),
                             callbacks=callbacks),
    )


def _no_dashboard_here() -> bool:
    """True where the connected Ray surely has no dashboard: this process runs on the head node and nothing
    listens at the dashboard address the head published (a local Ray of a stage or of `make demo`, started
    without ``ray[default]``). On a cluster node started by ``ray start`` with the dashboard, or from a
    driver on another node (which cannot tell), False.
    """
    import ray
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    from pipeline.distributed import listening

    if not ray.is_initialized():
        return False
    here = ray.get_runtime_context().get_node_id()
    if not any(n["NodeID"] == here and HEAD_NODE_RESOURCE_NAME in n["Resources"] for n in ray.nodes() if n["Alive"]):
        return False
    address = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    return address is None or not listening(address.decode())


CLEANER_CALLBACK = "PlacementGroupCleanerCallback"


def _trainer_without_state_api(trainer_class):
    """``trainer_class`` without Ray Train's placement-group cleaner, for a Ray without a dashboard.

    The cleaner (Ray 2.60) is a detached actor that asks the dashboard's state API every second whether the
    controller still lives, to remove its placement group if it died. Without a dashboard each question
    blocks 40 s and then ends the cleaner's thread with an error it does not catch: it never cleans, yet a
    run that ends within that time waits 12-16 s at its end for the blocked thread (every short run: each
    test, `make demo`). Dropping it loses nothing that worked there.
    """
    class TrainerWithoutStateApi(trainer_class):
        def _create_default_callbacks(self):
            return [c for c in super()._create_default_callbacks() if type(c).__name__ != CLEANER_CALLBACK]

    return TrainerWithoutStateApi


def _report_forwarder(reports):
    """A Ray Train ``UserCallback`` that puts rank 0's metrics of each report on the Ray queue ``reports``.

    Ray Train V2 runs callbacks in its controller actor (on the driver's node, but another process), so the
    callback only forwards; the function that uses the metrics runs in the driver (:func:`forwarded_reports`).
    """
    from ray.train import UserCallback

    class ReportForwarder(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            # metrics[i] is what world rank i reported; rank 0 alone has the validation mAP. A checkpoint
            # saved mid-epoch on a preemption notice is no epoch: it does not go to the live metrics.
            if "preemption_checkpoint_step" not in metrics[0]:
                reports.put(dict(metrics[0]))

    return ReportForwarder()


@contextlib.contextmanager
def forwarded_reports(on_report: Callable[[dict[str, Any]], None] | None) -> Iterator[list]:
    """Ray Train callbacks (for :func:`make_trainer`) that call ``on_report(metrics)`` in this process on
    each ``ray.train.report`` of the run, in order, while it goes (rank 0's metrics: epoch, train_loss, lr,
    val_map, images_per_s_per_worker, ...). Every report is handed over before the block ends. An
    exception of ``on_report`` is logged, not raised: a failing logger must not stop a training run.

    Needs a connected Ray (a queue actor with no CPU, so it never waits behind the training workers).
    """
    if on_report is None:
        yield []
        return
    from ray.util.queue import Queue

    reports = Queue(actor_options={"num_cpus": 0})
    done = threading.Event()

    def pump() -> None:
        while True:
            try:
                item = reports.get(timeout=0.5)
            except queue.Empty:
                if done.is_set():
                    return
                continue
            except Exception as e:  # the queue actor is gone (Ray shut down): nothing more will come
                log.warning("live reports stopped: %s", e)
                return
            try:
                on_report(item)
            except Exception:
                log.exception("on_report failed for the report of epoch %s (training goes on)", item.get("epoch"))

    thread = threading.Thread(target=pump, name="train-reports", daemon=True)
    thread.start()
    try:
        yield [_report_forwarder(reports)]
    finally:
        done.set()  # the pump drains what is queued, then stops
        thread.join(timeout=60)
        with contextlib.suppress(Exception):
            reports.shutdown()


def export(result, model_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Copies the best weights of a finished run to ``model_dir`` atomically; returns the epoch history.

    The history comes from the latest checkpoint, the weights from the checkpoint of the best epoch (its
    ``model/`` only: the optimizer state beside it is not downloaded).

    Raises:
        RuntimeError: the run reported no checkpoint (it failed before finishing an epoch), or none of its
            kept checkpoints holds the best epoch's weights.
    """
    import pyarrow.fs

    from pipeline.training.recipe import HISTORY, HOLDS_BEST

    if result.checkpoint is None:
        raise RuntimeError(f"training run at {result.path} reported no checkpoint: {result.error}")
    latest = result.checkpoint
    with latest.filesystem.open_input_stream(f"{latest.path}/{HISTORY}") as f:
        history = json.loads(f.read())
    best_epoch = history[-1]["best_epoch"]
    best = [c for c, m in result.best_checkpoints or [] if m.get(HOLDS_BEST) and m.get("epoch") == best_epoch]
    if not best:
        raise RuntimeError(f"training run at {result.path}: no kept checkpoint holds the weights of its best "
                           f"epoch {best_epoch}")
    with storage.atomic_path(model_dir) as tmp:
        tmp.mkdir()
        pyarrow.fs.copy_files(f"{best[-1].path}/model", str(tmp), source_filesystem=best[-1].filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    return history

"""The per-worker fine-tuning recipe (runs inside each Ray Train worker; reads top to bottom).

set up (model, data, the loaders that live for the run) -> resume from the last Ray Train checkpoint, if any
-> per epoch: train with over-sampling, augmentation and gradient accumulation -> validate (sharded,
gathered on rank 0) -> report metrics and a checkpoint (weights, optimizer, scheduler, history) so a
restarted worker group, or a re-run with the same run name, continues from there.

The batch that trains is ``train.global_batch``, exactly: every optimizer step takes ``global_batch /
workers`` images on each worker in micro-batches of at most ``placement.train.micro_batch``
(:func:`pipeline.training.sampling.split_batch`); each micro-batch's mean loss is divided by the number of
micro-batches and DDP averages the workers' gradients (syncing on the last micro-batch only), so the
gradient is the mean over the global batch, as one large step's.

Every random draw is a function of where it happens, not of what ran before: a sample's crop, flip and
jitter of (seed, epoch, its position in the epoch's order), anything the model draws of (seed, epoch,
optimizer step, rank). A run resumed at any step (a killed worker's at an epoch's start, a preempted one's
mid-epoch) ends with the uncut run's weights, and no checkpoint holds a generator.

Precision (``placement.train.precision``, :mod:`pipeline.precision`): bf16 autocast on CUDA by default,
fp32 on CPU; on CUDA the fp32 matmuls outside autocast use TF32, AdamW is the fused kernel, and
``placement.train.compile`` compiles the model (``torch.compile``).

Spot nodes: every ``NOTICE_EVERY`` optimizer steps the workers ask Ray Train whether a node of the run is
about to be reclaimed (:func:`ray.train.get_preemption_info`); on the first notice they save a checkpoint
at once, mid-epoch, and train on. When the node goes, Ray Train restarts the worker group (counted against
``FailureConfig.max_preemption_failures``, not ``max_failures``) and the epoch resumes at that step.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch

from pipeline import precision, storage
from pipeline.model import ModelConfig, build_model, inference_transform, save_checkpoint
from pipeline.training.dataset import ImageDataset, split_samples
from pipeline.training.loader import Samples, loader_processes, make_loader, train_data, usable_cpus
from pipeline.training.losses import make_loss
from pipeline.training.sampling import BatchSplit, epoch_samples, split_batch, step_seed, steps_per_epoch

STATE = "train_state.pt"
HISTORY = "history.json"
# Rank 0's report says 1 when its checkpoint's weights are the best so far. Ray Train keeps the latest
# checkpoint and the last one marked so (launcher.make_trainer): the best weights are never copied, they
# are the model/ of that checkpoint (launcher.export).
HOLDS_BEST = "holds_best"
# Optimizer steps between two looks at Ray Train's preemption notice. Each look is a barrier of all
# workers (a round trip to one actor, milliseconds); a notice comes 30 s (GCP) to 2 min (AWS) before the
# node goes, and 10 steps take seconds even at 672 px.
NOTICE_EVERY = 10
# An epoch whose steps waited for data longer than this fraction of their time is input-bound: the
# epoch's line and the stage's console say which knob adds loader processes.
DATA_WAIT_WARN = 0.2


@dataclass
class Worker:
    """What one worker trains with (:func:`setup`); ``model`` is wrapped for DDP / compile when asked."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Callable
    split: BatchSplit
    steps: int  # optimizer steps per epoch
    train_targets: np.ndarray
    samples: Samples  # the training loader's sampler, handed each epoch's keys
    loader: torch.utils.data.DataLoader
    augment: Callable | None  # the batch path's on-device augmentation
    val_loader: torch.utils.data.DataLoader
    val_labels: np.ndarray
    device: torch.device
    loader_processes: int


def setup(cfg: dict[str, Any], images: pa.Table, rank: int, world: int, device: torch.device,
          prepare: Callable = lambda model: model, cores_per_gpu: float | None = None) -> Worker:
    """Model (same initial weights on every rank), data, loss, optimizer, schedule and loaders of one worker.

    ``prepare`` wraps the model for the workers (Ray Train's ``prepare_model``: DDP); ``cores_per_gpu``
    (a GPU worker's node) sizes ``loader_workers: auto``.
    """
    split = split_batch(cfg["global_batch"], world, cfg["micro_batch"])
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls (outside bf16 autocast)
    torch.manual_seed(cfg["seed"])
    text = None if cfg["text_embeddings"] is None else np.asarray(cfg["text_embeddings"], np.float32)
    model = build_model(ModelConfig.from_dict(cfg["model"]), text, seed=cfg["seed"]).to(device)
    mconf = model.config
    c = mconf.num_classes
    train_uris, _, train_targets = split_samples(images, "train", c, cfg["ambiguous_as"], cfg["unknown_as"])
    val_uris, val_labels, val_targets = split_samples(images, "val", c, cfg["ambiguous_as"], cfg["unknown_as"])
    val_set = ImageDataset(val_uris, val_targets, inference_transform(mconf), np.arange(len(val_uris))[rank::world])
    processes = loader_processes(cfg.get("loader_workers", 0), cfg.get("cpus_per_worker", 1), cores_per_gpu)
    dataset, collate, augment = train_data(train_uris, train_targets, mconf, cfg, device)
    samples = Samples()
    steps = steps_per_epoch(train_targets, cfg["min_per_class"], split)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, int(cfg["restart_epochs"] * steps)))
    model = prepare(model)
    if cfg.get("compile"):
        model = torch.compile(model)  # around DDP: its graph breaks at the gradient buckets
    return Worker(model, optimizer, scheduler, make_loss(cfg["loss"], torch.from_numpy(train_targets.astype(np.float32))),
                  split, steps, train_targets, samples,
                  make_loader(dataset, split.micro_batch, processes, collate, samples), augment,
                  make_loader(val_set, split.micro_batch, processes), val_labels, device, processes)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The classifier inside torch.compile's and DDP's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def _waiting(batches, waited: list[float]):
    """``batches``, adding to ``waited[0]`` the seconds each one took to arrive."""
    it = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        waited[0] += time.perf_counter() - start
        yield batch


def _maybe_die(cfg, rank: int, epoch: int) -> None:
    """Test hook (``DEFR_FAULT_INJECTION``): SIGKILL one worker once, to exercise FailureConfig."""
    fault = cfg.get("fault")
    if fault and rank == fault["rank"] and epoch == fault["epoch"] and not os.path.exists(fault["marker"]):
        # Ray Train's controller collects reports at its health check (every 2 s): a worker dying sooner
        # after a report loses that report's checkpoint and resumes from the one before. Wait it out so the
        # test is deterministic.
        time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 1)
        Path(fault["marker"]).write_text(f"killed rank {rank} at epoch {epoch}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def train_epoch(w: Worker, cfg: dict[str, Any], epoch: int, rank: int, start_step: int = 0,
                partial_loss=(0.0, 0), on_step=None) -> dict[str, float]:
    """Trains one epoch, or its rest from optimizer step ``start_step`` (``partial_loss``: the loss sum and
    count of the steps before). ``on_step(epoch, steps_done, loss_sum, count)`` runs after each optimizer
    step but the epoch's last (the preemption watch).

    Returns the epoch's mean train loss (all workers), this worker's images/s and ``data_wait``: the
    fraction of the workers' time spent waiting for the loader.
    """
    from tqdm import tqdm

    model, device, accum = w.model, w.device, w.split.accumulation
    w.samples.set(epoch_samples(w.train_targets, cfg["min_per_class"], cfg["seed"], epoch, w.split, rank,
                                start_step))
    model.train()
    total, count, seen, waited = torch.full((), float(partial_loss[0]), device=device), int(partial_loss[1]), 0, [0.0]
    step = start_step
    start = time.perf_counter()
    w.optimizer.zero_grad(set_to_none=True)
    batches = tqdm(_waiting(w.loader, waited), total=len(w.loader), desc=f"epoch {epoch}", disable=rank != 0,
                   mininterval=5)
    for i, (images, targets, _) in enumerate(batches):
        if i % accum == 0:
            torch.manual_seed(step_seed(cfg["seed"], epoch, step, rank))
        if i == 1:
            _maybe_die(cfg, rank, epoch)
        images = w.augment(images, device) if w.augment is not None else images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        last = (i + 1) % accum == 0
        with model.no_sync() if not last and hasattr(model, "no_sync") else contextlib.nullcontext():
            with precision.autocast(device, cfg.get("precision", "auto")):
                loss = w.loss_fn(model(images).float(), targets)
            (loss / accum).backward()  # / accum: the mean over the worker's share of the global batch
        total += loss.detach() * len(targets)
        count += len(targets)
        seen += len(targets)
        if last:
            w.optimizer.step()
            w.scheduler.step()
            w.optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step is not None and step < w.steps:
                on_step(epoch, step, total, count)
    elapsed = time.perf_counter() - start
    stats = torch.stack([total.double(), *torch.tensor([count, waited[0], elapsed], dtype=torch.float64,
                                                       device=device)])
    ddp = getattr(model, "_orig_mod", model)
    if isinstance(ddp, torch.nn.parallel.DistributedDataParallel):
        torch.distributed.all_reduce(stats, group=ddp.process_group)  # the workers the model syncs over
    total, count, waited_all, elapsed_all = stats.tolist()
    return {"train_loss": total / max(count, 1), "images_per_s_per_worker": seen / elapsed,
            "data_wait": waited_all / elapsed_all}


def data_wait_warning(data_wait: float, processes: int, idle_cpus: int) -> str | None:
    """What to do about an input-bound epoch; None when it was not, or when its node has no CPU left for
    another loader process (the demo's 2 workers on 2 cores: the wait is the decoding itself)."""
    if data_wait <= DATA_WAIT_WARN or idle_cpus < 1:
        return None
    return (f"training waited for data {data_wait:.0%} of its step time: raise placement.train.loader_workers "
            f"({processes} loader processes per worker now, {idle_cpus} CPUs idle on the node)")


class PreemptionWatch:
    """``on_step`` of :func:`train_epoch` in a Ray Train worker: every :data:`NOTICE_EVERY` optimizer
    steps, all workers sum their epoch's loss so far (one torch collective) and then ask
    :func:`ray.train.get_preemption_info` (a barrier: every rank calls it equally often, which equal shares
    guarantee); on the run's first notice each rank that got it reports, rank 0 with a checkpoint of the
    epoch so far (weights, optimizer, scheduler, the loss sum of all ranks).

    The sum comes BEFORE the question, and nothing after the answer waits for another rank: once Ray Train
    sees the notice it relaxes that barrier to the ranks that stay (``relax_collectives_on_preemption``),
    so rank 0 can get the notice alone while a reclaimed rank that arrives later waits in the barrier
    until the node goes. A collective after the answer would hold rank 0 there too, and the checkpoint
    would never be written (seen on a busy machine: the epoch restarted from its first batch)."""

    def __init__(self, save, rank: int, accumulation: int = 1, every: int = NOTICE_EVERY, ask=None):
        self.save, self.rank, self.accumulation, self.every = save, rank, accumulation, every
        self.ask = ask  # the notice's source; None: ray.train.get_preemption_info
        self.optimizer_steps = 0
        self.saved = False  # once per worker group: Ray Train restarts it when the node goes

    def __call__(self, epoch: int, steps_done: int, loss_sum: torch.Tensor, count: int) -> None:
        self.optimizer_steps += 1
        if self.saved or self.optimizer_steps % self.every:
            return
        stats = torch.stack([loss_sum.detach().clone(), torch.tensor(float(count), device=loss_sum.device)])
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # rank 0's checkpoint carries the whole epoch's loss so far
        if self.ask is None:
            import ray.train

            self.ask = ray.train.get_preemption_info
        notice = self.ask()
        if notice is None:
            return
        if self.rank == 0:
            deadline = ("no deadline" if notice.deadline_ms is None
                        else f"{notice.deadline_ms / 1000 - time.time():.0f} s left")
            print(f"[defr] preemption notice (nodes {notice.preempted_node_ids}, ranks {notice.preempted_ranks}, "
                  f"{deadline}): checkpoint at epoch {epoch} batch {steps_done * self.accumulation}", flush=True)
        self.save(epoch, steps_done, [float(stats[0]), int(stats[1].item())])
        self.saved = True


@torch.no_grad()
def validate(w: Worker, cfg: dict[str, Any]) -> np.ndarray | None:
    """Val logits [N, C] in val row order on rank 0 (None elsewhere); each worker scores its share."""
    net = _unwrap(w.model)
    net.eval()
    rows, scores = [], []
    for images, _, r in w.val_loader:
        with precision.autocast(w.device, cfg.get("precision", "auto")):
            scores.append(net(images.to(w.device)).float().cpu().numpy())
        rows.append(r.numpy())
    n_val, num_classes = w.val_labels.shape
    part = (np.concatenate(rows) if rows else np.zeros(0, int),
            np.concatenate(scores) if scores else np.zeros((0, num_classes), np.float32))
    parts = [part]
    if torch.distributed.is_initialized():
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, part)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return None
    out = np.zeros((n_val, num_classes), np.float32)
    for r, s in parts:
        out[r] = s
    return out


def new_state() -> dict[str, Any]:
    """The training state of a run that has not trained yet."""
    return {"epoch": 0, "step": 0, "partial_loss": [0.0, 0], "best_map": -1.0, "best_epoch": -1, "history": [],
            "resumes": []}


def write_checkpoint(folder: Path, w: Worker, state: dict[str, Any]) -> None:
    """What a run needs to go on exactly where it was: the current weights (``model/``), the optimizer's and
    the scheduler's state with the training state (epoch, optimizer step reached, the loss so far, the best
    epoch and its mAP: ``train_state.pt``) and the history (``history.json``). No copy of the best weights
    (:data:`HOLDS_BEST`) and no generator (every draw is seeded by where it happens)."""
    save_checkpoint(_unwrap(w.model), folder / "model")
    torch.save({k: v for k, v in state.items() if k != "history"} |
               {"optimizer": w.optimizer.state_dict(), "scheduler": w.scheduler.state_dict()}, folder / STATE)
    (folder / HISTORY).write_text(json.dumps(state["history"], indent=1))


def read_checkpoint(folder: Path, w: Worker) -> dict[str, Any]:
    """Loads a :func:`write_checkpoint` folder into ``w``; returns the training state."""
    from safetensors.torch import load_file

    _unwrap(w.model).load_state_dict(load_file(str(folder / "model" / "model.safetensors")))
    state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    w.optimizer.load_state_dict(state.pop("optimizer"))
    w.scheduler.load_state_dict(state.pop("scheduler"))
    state["history"] = json.loads((folder / HISTORY).read_text())
    return state


def _restore(w: Worker) -> dict[str, Any]:
    """Loads the last reported checkpoint, if any; returns the training state (epoch, best, history)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return new_state()
    with checkpoint.as_directory() as d:
        state = read_checkpoint(Path(d), w)
    if state["step"]:
        print(f"resuming epoch {int(state['epoch'])} at batch {int(state['step']) * w.split.accumulation} "
              "(checkpoint saved on a preemption notice)", flush=True)
    else:
        print(f"resuming from the checkpoint of epoch {int(state['epoch']) - 1}", flush=True)
    state["resumes"] = list(state["resumes"]) + [int(state["epoch"])]
    return state


def _cores_per_gpu() -> float | None:
    """CPUs per GPU of this worker's node (its Ray resources); None on a node without GPUs."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    resources = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == here), {})
    return resources.get("CPU", 0) / resources["GPU"] if resources.get("GPU") else None


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """Ray Train entry point; ``cfg`` is built by :func:`pipeline.training.launcher.loop_config`."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from pipeline.metrics.classification import hico_classification_map

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    images = storage.absolute_uris(storage.read_parquet(cfg["images"]), cfg.get("uri_base"))
    w = setup(cfg, images, rank, world, device, ray.train.torch.prepare_model,
              _cores_per_gpu() if device.type == "cuda" else None)
    state = _restore(w)
    split = {"effective_global_batch": w.split.global_batch, "workers": w.split.workers,
             "micro_batch": w.split.micro_batch, "accumulation": w.split.accumulation}
    # CPUs of this node that neither trains nor loads: where another loader process could run
    idle_cpus = usable_cpus() - ctx.get_local_world_size() * (w.loader_processes + 1)
    if rank == 0:
        print(f"[defr] training from epoch {int(state['epoch'])} of {cfg['epochs']}: {w.steps * w.split.accumulation} "
              f"batches per epoch on each of {world} worker(s) ({w.split.describe()}; {w.loader_processes} loader "
              f"process(es) per worker; {precision.resolve(cfg.get('precision', 'auto'), device) or 'fp32'})",
              flush=True)

    # --- epochs
    def report_checkpoint(metrics: dict[str, Any]) -> None:
        """Every rank reports (a barrier); rank 0 with the checkpoint of ``state`` and the current weights."""
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = storage.scratch_dir("defr-ckpt")
            write_checkpoint(checkpoint_dir, w, state)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)
        if checkpoint_dir:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def save_on_notice(epoch: int, steps_done: int, partial_loss: list) -> None:
        state.update(epoch=epoch, step=steps_done, partial_loss=partial_loss)
        # not an epoch: launcher.forwarded_reports leaves it out of the live metrics
        report_checkpoint({"epoch": epoch, "preemption_checkpoint_step": steps_done, HOLDS_BEST: 0})
        if rank == 0:  # report() returns once the checkpoint is on storage: the node may go from here on
            print(f"[defr] preemption checkpoint saved at epoch {epoch} batch {steps_done * w.split.accumulation}: "
                  "the restarted workers resume there", flush=True)

    watch = PreemptionWatch(save_on_notice, rank, w.split.accumulation)
    for epoch in range(int(state["epoch"]), cfg["epochs"]):
        # rank 0's checkpoint holds the loss sum over all ranks of an epoch cut by a preemption
        partial_loss = state["partial_loss"] if rank == 0 else [0.0, 0]
        lr = w.scheduler.get_last_lr()[0]
        stats = train_epoch(w, cfg, epoch, rank, int(state["step"]), partial_loss, watch)
        scores = validate(w, cfg)
        metrics = {"epoch": epoch, **stats, "lr": lr, **split}
        if rank == 0:
            metrics["val_map"] = float(hico_classification_map(scores, w.val_labels).map)
            better = metrics["val_map"] > state["best_map"]
            if better:
                state["best_map"], state["best_epoch"] = metrics["val_map"], epoch
            metrics.update(best_val_map=state["best_map"], best_epoch=state["best_epoch"],
                           resumes=len(state["resumes"]), **{HOLDS_BEST: int(better)})
            state["history"].append(dict(metrics))
            # One line per epoch for the driver's progress bar (stage_support/console.py follows the log); the
            # stage puts the first warning on the console.
            wait = data_wait_warning(stats["data_wait"], w.loader_processes, idle_cpus)
            if wait:
                metrics["data_wait_warning"] = wait
            print(f"[defr] epoch {epoch + 1}/{cfg['epochs']} loss {stats['train_loss']:.4f} val mAP "
                  f"{100 * metrics['val_map']:.2f}% data wait {stats['data_wait']:.0%}", flush=True)
        state.update(epoch=epoch + 1, step=0, partial_loss=[0.0, 0])
        report_checkpoint(metrics)

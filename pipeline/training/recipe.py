"""The per-worker fine-tuning recipe (runs inside each Ray Train worker; reads top to bottom).

setup data -> setup model (or resume from the last Ray Train checkpoint) -> per epoch: train with
over-sampling, augmentation, grad accumulation and bf16 autocast on GPU -> validate (sharded, gathered on
rank 0) -> report metrics and a checkpoint (current weights, best weights so far, optimizer state,
history) so a restarted worker group, or a re-run with the same run name, continues from there.

Spot nodes: every ``NOTICE_EVERY`` optimizer steps the workers ask Ray Train whether a node of the run is
about to be reclaimed (:func:`ray.train.get_preemption_info`); on the first notice they save a checkpoint
at once, mid-epoch, and train on. When the node goes, Ray Train restarts the worker group (counted against
``FailureConfig.max_preemption_failures``, not ``max_failures``) and the epoch resumes at that step.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import storage
from pipeline.training.losses import make_loss
from pipeline.model import ModelConfig, build_model, inference_transform, save_checkpoint
from pipeline.training.augment import train_transform
from pipeline.training.batch_augmentation import BatchAugmentation, CropReader, collate_crops, read_bytes
from pipeline.training.dataset import ImageDataset, split_samples
from pipeline.training.sampling import oversample, shard

STATE = "train_state.pt"
HISTORY = "history.json"
# Optimizer steps between two looks at Ray Train's preemption notice. Each look is a barrier of all
# workers (a round trip to one actor, milliseconds); a notice comes 30 s (GCP) to 2 min (AWS) before the
# node goes, and 10 steps take seconds even at 672 px.
NOTICE_EVERY = 10
# batch: decode + crop in the loader, the rest per batch on the device; pil: all per image in the loader;
# auto: batch on CUDA, pil on CPU (where the "device" is the same CPU and the per-image PIL path is cheaper).
from pipeline.choices import AUGMENT_MODES as AUGMENTATIONS


def _setup_data(cfg: dict[str, Any], model_config: ModelConfig, rank: int, world: int):
    images = storage.absolute_uris(storage.read_parquet(cfg["images"]), cfg.get("uri_base"))
    c = model_config.num_classes
    train = split_samples(images, "train", c, cfg["ambiguous_as"], cfg["unknown_as"])
    val = split_samples(images, "val", c, cfg["ambiguous_as"], cfg["unknown_as"])
    val_rows = np.arange(len(val[0]))[rank::world]
    val_set = ImageDataset(val[0], val[2], inference_transform(model_config), val_rows)
    return train, val, val_set


def loader_workers(cfg: dict[str, Any]) -> int:
    """DataLoader processes of one worker: ``loader_workers`` as set, or for ``auto`` every CPU the worker
    has (``cpus_per_worker``, at most the CPUs this process may use) but one, which trains."""
    n = cfg.get("loader_workers", 0)
    if n != "auto":
        return int(n)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(int(cfg.get("cpus_per_worker", 1)), usable) - 1)


def _loader(dataset, cfg, shuffle=False, collate=None):
    return torch.utils.data.DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=shuffle,
                                       num_workers=loader_workers(cfg), drop_last=False, collate_fn=collate,
                                       persistent_workers=False, pin_memory=torch.cuda.is_available())


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one rank's random draws in one epoch."""
    return int(seed) * 1_000_003 + epoch * 1009 + rank


def train_data(uris: list[str], targets: np.ndarray, mconf: ModelConfig, cfg: dict[str, Any], indices,
               epoch: int, rank: int, device: torch.device):
    """(dataset, collate, on-device augmentation or None) of one epoch, by ``cfg["augment"]``.

    ``batch``: the loader decodes and crops (:class:`CropReader`), the training device resizes, flips,
    jitters and normalises whole batches (:class:`BatchAugmentation`, its draws seeded by seed, epoch and
    rank). ``pil``: the per-image PIL transform, all in the loader. ``auto`` (default): ``batch`` on CUDA,
    ``pil`` on CPU (measured: ``python -m bench loader``, docs/performance.md).
    """
    # The PIL path's crops, flips and jitter, the batch path's crop boxes and the loader workers' seeds draw
    # from torch's global RNG: seeded per epoch and rank, a run resumed at an epoch's start (a killed
    # worker) draws what the uncut run drew there, instead of restarting the sequence the first epoch drew.
    seed = epoch_seed(cfg["seed"], epoch, rank)
    torch.manual_seed(seed)
    augment = cfg.get("augment", "auto")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"train.augment {augment!r}: expected one of {AUGMENTATIONS}")
    if augment == "auto":
        augment = "batch" if device.type == "cuda" else "pil"
    if augment == "pil":
        transform = train_transform(mconf, cfg["crop_scale"], cfg["jitter"])
        return ImageDataset(uris, targets, transform, indices), None, None
    reader = CropReader(mconf.image_size, cfg["crop_scale"], cfg.get("decode", "loader"))
    generator = torch.Generator().manual_seed(seed)
    return (ImageDataset(uris, targets, reader, indices, read=read_bytes), collate_crops,
            BatchAugmentation(mconf.image_size, mconf.mean, mconf.std, cfg["jitter"], generator))


def _restore(model, optimizer, scheduler, best_dir: Path) -> dict[str, Any]:
    """Loads the last reported checkpoint, if any; returns the training state (epoch, best, history)."""
    import ray.train
    from safetensors.torch import load_file

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"epoch": 0, "step": 0, "partial_loss": [0.0, 0], "best_map": -1.0, "best_epoch": -1,
                "history": [], "resumes": []}
    with checkpoint.as_directory() as d:
        d = Path(d)
        model.load_state_dict(load_file(str(d / "model" / "model.safetensors")))
        state = torch.load(d / STATE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state.pop("optimizer"))
        scheduler.load_state_dict(state.pop("scheduler"))
        shutil.rmtree(best_dir, ignore_errors=True)
        shutil.copytree(d / "best", best_dir)
        state["history"] = json.loads((d / HISTORY).read_text())
    state.setdefault("step", 0)
    state.setdefault("partial_loss", [0.0, 0])
    if state["step"]:
        print(f"resuming epoch {int(state['epoch'])} at batch {int(state['step'])} (checkpoint saved on a "
              "preemption notice)", flush=True)
    else:
        print(f"resuming from the checkpoint of epoch {int(state['epoch']) - 1}", flush=True)
    state["resumes"] = list(state.get("resumes", [])) + [int(state["epoch"])]
    return state


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


def _train_epoch(model, loader, loss_fn, optimizer, scheduler, accum, device, cfg, rank, epoch, augment=None,
                 start_step: int = 0, partial_loss=(0.0, 0), on_step=None):
    """Trains one epoch (or its rest: ``loader`` then holds the batches from ``start_step`` on, and
    ``partial_loss`` the loss sum and count of the steps before). ``on_step(epoch, batches_done, loss_sum,
    count)`` runs after each optimizer step but the epoch's last (the preemption watch). Returns (mean train loss, images/s)."""
    from tqdm import tqdm

    model.train()
    total, count, seen = torch.full((), float(partial_loss[0]), device=device), int(partial_loss[1]), 0
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=rank != 0, mininterval=5)
    n_steps = start_step + len(loader)
    for step, (images, targets, _) in enumerate(bar, start=start_step):
        if step == 1:
            _maybe_die(cfg, rank, epoch)
        images = augment(images, device) if augment is not None else images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        last = (step + 1) % accum == 0 or step + 1 == n_steps
        sync = model.no_sync() if hasattr(model, "no_sync") and not last else _null()
        with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(model(images).float(), targets)
            (loss / accum).backward()
        if last:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        total += loss.detach() * len(images)
        count += len(images)
        seen += len(images)
        if last and on_step is not None and step + 1 < n_steps:
            on_step(epoch, step + 1, total, count)
    if torch.distributed.is_initialized():
        stats = torch.stack([total, torch.tensor(float(count), device=device)])
        torch.distributed.all_reduce(stats)
        total, count = stats[0], int(stats[1].item())
    return float(total / max(count, 1)), seen / (time.perf_counter() - start)


class PreemptionWatch:
    """``on_step`` of :func:`_train_epoch` in a Ray Train worker: every :data:`NOTICE_EVERY` optimizer
    steps, all workers ask :func:`ray.train.get_preemption_info` (a barrier: every rank calls it equally
    often, which the padded shards guarantee); on the run's first notice, every rank reports and rank 0
    saves a checkpoint of the epoch so far (weights, optimizer, scheduler, the loss sum of all ranks)."""

    def __init__(self, save, rank: int, every: int = NOTICE_EVERY):
        self.save, self.rank, self.every = save, rank, every
        self.optimizer_steps = 0
        self.saved = False  # once per worker group: Ray Train restarts it when the node goes

    def __call__(self, epoch: int, batches_done: int, loss_sum: torch.Tensor, count: int) -> None:
        import ray.train

        self.optimizer_steps += 1
        if self.saved or self.optimizer_steps % self.every:
            return
        notice = ray.train.get_preemption_info()
        if notice is None:
            return
        stats = torch.stack([loss_sum.detach().clone(), torch.tensor(float(count), device=loss_sum.device)])
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # rank 0's checkpoint carries the whole epoch's loss so far
        if self.rank == 0:
            deadline = ("no deadline" if notice.deadline_ms is None
                        else f"{notice.deadline_ms / 1000 - time.time():.0f} s left")
            print(f"[defr] preemption notice (nodes {notice.preempted_node_ids}, ranks {notice.preempted_ranks}, "
                  f"{deadline}): checkpoint at epoch {epoch} batch {batches_done}", flush=True)
        self.save(epoch, batches_done, [float(stats[0]), int(stats[1].item())])
        self.saved = True


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@torch.no_grad()
def _validate(model, val_set, cfg, device, n_val: int, num_classes: int) -> np.ndarray | None:
    """Val logits [N, C] in val row order on rank 0 (None elsewhere); each worker scores its share."""
    net = getattr(model, "module", model)
    net.eval()
    rows, scores = [], []
    for images, _, r in _loader(val_set, cfg):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            scores.append(net(images.to(device)).float().cpu().numpy())
        rows.append(r.numpy())
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


def _write_checkpoint(folder: Path, model, optimizer, scheduler, state, best_dir: Path) -> None:
    save_checkpoint(getattr(model, "module", model), folder / "model")
    shutil.copytree(best_dir, folder / "best")
    torch.save({k: v for k, v in state.items() if k != "history"} |
               {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, folder / STATE)
    (folder / HISTORY).write_text(json.dumps(state["history"], indent=1))


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """Ray Train entry point; ``cfg`` is built by :func:`pipeline.training.launcher.loop_config`."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from pipeline.metrics.classification import hico_classification_map

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg["seed"])  # same init on every rank (DDP also broadcasts it)
    device = ray.train.torch.get_device()

    # --- model and data
    text = None if cfg["text_embeddings"] is None else np.asarray(cfg["text_embeddings"], np.float32)
    model = build_model(ModelConfig.from_dict(cfg["model"]), text, seed=cfg["seed"])
    mconf = model.config
    (train_uris, _, train_targets), (_, val_labels, _), val_set = _setup_data(cfg, mconf, rank, world)
    loss_fn = make_loss(cfg["loss"], torch.from_numpy(train_targets.astype(np.float32)))
    accum = max(1, cfg["global_batch"] // (cfg["batch_size"] * world))
    epoch_size = len(oversample(train_targets, cfg["min_per_class"], cfg["seed"]))
    steps = len(shard(np.arange(epoch_size), 0, world, cfg["batch_size"] * accum)) // (cfg["batch_size"] * accum)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, int(cfg["restart_epochs"] * steps)))
    best_dir = storage.scratch_dir("defr-best")
    state = _restore(model, optimizer, scheduler, best_dir)
    model = ray.train.torch.prepare_model(model)
    if rank == 0:
        print(f"[defr] training from epoch {int(state['epoch'])} of {cfg['epochs']}: {steps * accum} batches "
              f"per epoch on each of {world} worker(s)", flush=True)

    # --- epochs
    def report_checkpoint(metrics: dict[str, Any]) -> None:
        """Every rank reports (a barrier); rank 0 with the checkpoint of ``state`` and the current weights."""
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = storage.scratch_dir("defr-ckpt")
            _write_checkpoint(checkpoint_dir, model, optimizer, scheduler, state, best_dir)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)
        if checkpoint_dir:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def save_on_notice(epoch: int, batches_done: int, partial_loss: list) -> None:
        state.update(epoch=epoch, step=batches_done, partial_loss=partial_loss)
        # not an epoch: launcher.forwarded_reports leaves it out of the live metrics
        report_checkpoint({"epoch": epoch, "preemption_checkpoint_step": batches_done})

    watch = PreemptionWatch(save_on_notice, rank)
    for epoch in range(int(state["epoch"]), cfg["epochs"]):
        indices = shard(oversample(train_targets, cfg["min_per_class"], cfg["seed"] + epoch), rank, world,
                        cfg["batch_size"] * accum)
        start_step, partial_loss = int(state["step"]), state["partial_loss"]
        if rank != 0:
            partial_loss = [0.0, 0]  # rank 0's checkpoint holds the sum over all ranks
        # the rest of an epoch cut by a preemption: the same (seeded) order, from the step it had reached
        indices = indices[start_step * cfg["batch_size"]:]
        train_set, collate, augment = train_data(train_uris, train_targets, mconf, cfg, indices, epoch, rank,
                                                 device)
        lr = scheduler.get_last_lr()[0]
        loss, ips = _train_epoch(model, _loader(train_set, cfg, collate=collate), loss_fn, optimizer, scheduler,
                                 accum, device, cfg, rank, epoch, augment, start_step, partial_loss, watch)
        scores = _validate(model, val_set, cfg, device, len(val_labels), mconf.num_classes)
        metrics = {"epoch": epoch, "train_loss": loss, "lr": lr, "images_per_s_per_worker": ips}
        if rank == 0:
            metrics["val_map"] = float(hico_classification_map(scores, val_labels).map)
            if metrics["val_map"] > state["best_map"]:
                state["best_map"], state["best_epoch"] = metrics["val_map"], epoch
                shutil.rmtree(best_dir, ignore_errors=True)
                save_checkpoint(getattr(model, "module", model), best_dir)
            metrics.update(best_val_map=state["best_map"], best_epoch=state["best_epoch"],
                           resumes=len(state["resumes"]))
            state["history"].append(dict(metrics))
            # One line per epoch for the driver's progress bar (stage_support/console.py follows the log).
            print(f"[defr] epoch {epoch + 1}/{cfg['epochs']} loss {loss:.4f} val mAP {100 * metrics['val_map']:.2f}%",
                  flush=True)
        state.update(epoch=epoch + 1, step=0, partial_loss=[0.0, 0])
        report_checkpoint(metrics)
    shutil.rmtree(best_dir, ignore_errors=True)

"""One command for a GPU you have for a few minutes: python -m bench gpu [--out bench_gpu.json]

Runs, in one process (no DVC, random weights: nothing is downloaded), each part on its own so a failure is
recorded and the rest still runs:

1. ``train``: the paper recipe, ViT-B/16 at 672 px, bf16 autocast, batch 32, AdamW, LSE-Sign on 600 classes,
   a fixed number of steps on ready tensors: images/s, step time, peak GPU memory, model FLOPs per image
   (``torch.utils.flop_counter`` on one step) and MFU against the GPU's dense bf16 peak;
1b. ``train_pipeline``: what the pipeline reaches: the training recipe itself on Ray Train (a local Ray, or
   ``RAY_ADDRESS``), one DDP worker per GPU of the node, the default loader (``loader_workers: auto``,
   ``augment: auto``), real 640x427 JPEG files on local disk, 672 px, bf16: images/s, the ceiling of the same
   run (the same steps on a ready batch), the fraction of step time spent waiting for data, peak GPU memory;
2. ``input_pipeline``: the training input pipeline on this machine's CPUs and GPU, 640x427 JPEGs to
   normalised 672 px batches on the device: the per-image PIL transform (``train.augment: pil``) and the
   split one (``batch``) with decoding in the loader or on the GPU (``placement.train.decode``);
3. ``predict`` and ``score_regions`` at 672 px, at the pipeline's own precision (bf16 autocast on CUDA,
   :mod:`pipeline.precision`): images/s, pairs/s of the stage's scorer, and its scores against fp32;
4. ``mmdet``: mmcv's compiled ops (nms, roi_align) on the device against the CPU, and one MMDetection
   (RTMDet-tiny) batch inference;
5. ``allreduce``: an NCCL all-reduce across the GPUs when there are two or more (bus bandwidth).

Writes a JSON file and prints a table. Under 8 minutes on one H100/H200-class GPU. ``--device cpu --tiny``
runs the same code on the tiny model at 96 px, ``train_pipeline`` with 2 Ray Train CPU workers, in a few
minutes on a loaded 2-core machine (the test suite runs it, so it cannot rot).
MFU needs the GPU's peak: known for H100/H200/A100/L40S/A10G/L4, else set ``BENCH_PEAK_TFLOPS``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

# Dense bf16 tensor-core peak in TFLOP/s (vendor data sheets; SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
PAPER = {"model": "ViT-B-16", "size": 672, "batch": 32, "steps": 20, "pipeline_steps": 30, "classes": 600,
         "text_dim": 512}
TINY = {"model": "defr-tiny-vit", "size": 96, "batch": 4, "steps": 3, "pipeline_steps": 3, "classes": 600,
        "text_dim": 64}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _model(cfg: dict, device: torch.device):
    from pipeline.model import ModelConfig, build_model

    torch.manual_seed(0)
    text = np.random.default_rng(0).standard_normal((cfg["classes"], cfg["text_dim"])).astype(np.float32)
    return build_model(ModelConfig(model_name=cfg["model"], image_size=cfg["size"], num_classes=cfg["classes"]),
                       text).to(device)


def peak_tflops(device: torch.device) -> float | None:
    if os.environ.get("BENCH_PEAK_TFLOPS"):
        return float(os.environ["BENCH_PEAK_TFLOPS"])
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def analytic_flops(model, size: int) -> float | None:
    """Model FLOPs of one image's forward + backward for a ViT (3 x forward: 2 per weight per token in the
    blocks, 4 * layers * tokens^2 * width for attention), the usual MFU convention; None for other towers."""
    v = model.visual
    if not hasattr(v, "transformer"):
        return None
    tokens = (size // v.patch_size[0]) * (size // v.patch_size[1]) + 1
    blocks = sum(p.numel() for p in v.transformer.parameters())
    return 3.0 * (2 * blocks * tokens + 4 * v.transformer.layers * tokens**2 * v.transformer.width)


def bench_train(cfg: dict, device: torch.device) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.precision import autocast
    from pipeline.training.losses import lse_sign_loss

    model = _model(cfg, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-5, weight_decay=0.0)
    b, s, c = cfg["batch"], cfg["size"], cfg["classes"]
    x = torch.randn(b, 3, s, s, device=device)
    y = torch.where(torch.rand(b, c, device=device) < 0.01, 1.0, -1.0)

    def step(images=x, targets=y):
        opt.zero_grad(set_to_none=True)
        with autocast(device, "auto"):
            loss = lse_sign_loss(model(images).float(), targets)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:  # forward + backward of one image
        step(x[:1], y[:1])
    counted = counter.get_total_flops()
    # The counter misses kernels it has no formula for (CPU's fused attention): take the larger.
    flops = max(counted, analytic_flops(model, s) or 0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _timed(step, device, cfg["steps"])
    out = {"model": cfg["model"], "image_size": s, "batch": b, "steps": cfg["steps"],
           "bf16": device.type == "cuda", "step_s": step_s, "images_per_s": b / step_s,
           "tflop_per_image": flops / 1e12, "tflop_per_image_counted": counted / 1e12,
           "achieved_tflops": flops * b / step_s / 1e12}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    peak = peak_tflops(device)
    out["mfu"] = out["achieved_tflops"] / peak if peak else None
    return out


def jpegs(root: Path, n: int) -> list[str]:
    """n JPEGs of 640x427 (HICO's typical size): the shared photo when present, else smooth noise."""
    from PIL import Image

    photo = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "person.jpg"
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(n):
        if photo.exists():
            img = Image.open(photo).convert("RGB").rotate(int(rng.integers(-8, 8)))
        else:
            img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        uris.append(str(root / f"{i:05d}.jpg"))
        img.resize((640, 427), Image.BICUBIC).save(uris[-1], quality=90)
    return uris


def bench_input_pipeline(cfg: dict, device: torch.device, root: Path, workers: int) -> dict:
    from pipeline.model import ModelConfig
    from pipeline.training.loader import Samples, make_loader, train_data

    uris = jpegs(root, 32)
    n = (8 if workers == 0 else 32) * cfg["batch"]  # enough batches that worker start-up is a small share
    targets = -np.ones((len(uris), cfg["classes"]), np.int8)
    indices = np.arange(n) % len(uris)
    mconf = ModelConfig(image_size=cfg["size"])
    out = {"images": n, "loader_workers": workers, "image": "640x427 JPEG"}
    for name, augment, decode in (("pil", "pil", "loader"), ("batch", "batch", "loader"),
                                  ("batch_decode_on_device", "batch", "device")):
        recipe = {"augment": augment, "decode": decode, "crop_scale": 0.5, "jitter": 0.4, "seed": 0}
        data, collate, on_device = train_data(uris, targets, mconf, recipe, device)
        samples = Samples()  # (row, draw seed) keys, as the recipe's epochs hand them
        samples.set(np.stack([indices, np.arange(n)], 1).astype(np.uint64))
        loader = make_loader(data, cfg["batch"], workers, collate, samples)

        def epoch():
            for images, _, _ in loader:
                images = on_device(images, device) if on_device else images.to(device, non_blocking=True)
            _sync(device)

        out[f"{name}_images_per_s"] = n / _timed(epoch, device, 1)
    out["batch_over_pil"] = out["batch_images_per_s"] / out["pil_images_per_s"]
    return out


def _pipeline_loop(cfg: dict) -> None:
    """One Ray Train worker of ``train_pipeline``: the recipe's own set-up and epochs
    (:func:`pipeline.training.recipe.setup`, :func:`~pipeline.training.recipe.train_epoch`: DDP, the default
    loader, its augmentation, autocast, accumulation), then the same steps on one ready batch (the ceiling)."""
    import dataclasses

    import ray.train
    import ray.train.torch

    from pipeline import storage
    from pipeline.training import recipe

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    images = storage.absolute_uris(storage.read_parquet(cfg["images"]), cfg["uri_base"])
    w = recipe.setup(cfg, images, rank, world, device, ray.train.torch.prepare_model,
                     recipe._cores_per_gpu() if device.type == "cuda" else None)
    recipe.train_epoch(w, cfg, 0, rank)  # warm-up: loader processes start, kernels are chosen
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    measured = recipe.train_epoch(w, cfg, 1, rank)
    m, size = w.split.micro_batch, cfg["model"]["image_size"]
    ready = (torch.randn(m, 3, size, size, device=device),
             torch.where(torch.rand(m, w.train_targets.shape[1], device=device) < 0.01, 1.0, -1.0), torch.arange(m))
    ceiling = recipe.train_epoch(dataclasses.replace(w, loader=[ready] * len(w.loader), augment=None), cfg, 2, rank)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    totals = torch.tensor([measured["images_per_s_per_worker"], ceiling["images_per_s_per_worker"]], device=device,
                          dtype=torch.float64)
    peak = torch.tensor([memory], device=device, dtype=torch.float64)
    torch.distributed.all_reduce(totals)  # every worker's images/s: the node's
    torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
    ray.train.report({"images_per_s": float(totals[0]), "ceiling_images_per_s": float(totals[1]),
                      "data_wait_fraction": measured["data_wait"], "ceiling_data_wait_fraction": ceiling["data_wait"],
                      "peak_gpu_memory_gib": float(peak[0]) if device.type == "cuda" else None,
                      "loader_processes": w.loader_processes, "workers": world, "micro_batch": m,
                      "accumulation": w.split.accumulation, "steps_per_epoch": w.steps,
                      "train_loss": measured["train_loss"]})


def bench_train_pipeline(cfg: dict, device: torch.device, root: Path) -> dict:
    """The training recipe itself on Ray Train: one worker per GPU of the node (DDP; 2 CPU workers on the
    dry run), ``loader_workers: auto``, ``train.augment: auto`` (batch on CUDA), ``precision: auto`` (bf16
    on CUDA), real 640x427 JPEG files on local disk, ``steps`` optimizer steps of one worker's micro-batch
    each per epoch. Epoch 0 warms up; epoch 1 is measured (images/s of all workers, the fraction of step time
    spent waiting for data, peak GPU memory); then the same steps on one ready batch already on the device
    give the ceiling of the same run."""
    try:
        import ray.cloudpickle
    except ImportError as e:
        return {"skipped": f"Ray is not installed ({e}): this part runs Ray Train (pip install 'ray[train]')"}
    import sys

    from pipeline import schemas, storage
    from pipeline.distributed import init_ray
    from pipeline.model import ModelConfig
    from pipeline.training.launcher import forwarded_reports, loop_config, make_trainer

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    workers = gpus or 2
    global_batch = cfg["batch"] * workers
    files = jpegs(root / "train_pipeline", 64)
    n = cfg["pipeline_steps"] * global_batch
    rng = np.random.default_rng(0)
    labels = [np.flatnonzero(rng.random(cfg["classes"]) < 0.01).tolist() for _ in range(n + 2)]
    table = schemas.conform(pa.table({
        "image_id": np.arange(n + 2), "split": ["train"] * n + ["val"] * 2,
        "file_name": [Path(files[i % len(files)]).name for i in range(n + 2)],
        "uri": [files[i % len(files)] for i in range(n + 2)], "width": [640] * (n + 2), "height": [427] * (n + 2),
        "positives": labels, "negatives": [[] for _ in range(n + 2)], "ambiguous": [[] for _ in range(n + 2)]}),
        schemas.IMAGES, "images")
    images = root / "train_pipeline.parquet"
    storage.write_parquet(table, images)
    text = np.random.default_rng(0).standard_normal((cfg["classes"], cfg["text_dim"])).astype(np.float32)
    model = ModelConfig(model_name=cfg["model"], image_size=cfg["size"], num_classes=cfg["classes"])
    config = loop_config(str(images), text, model, loader_workers="auto", decode="loader", cpus_per_worker=1,
                         micro_batch=cfg["batch"], precision="auto", compile=False, shards="", loss="lse_sign",
                         ambiguous_as="negative", unknown_as="negative", lr=1.5e-5, epochs=3, restart_epochs=5,
                         global_batch=global_batch, min_per_class=0, crop_scale=0.5, jitter=0.4, augment="auto",
                         seed=0)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the earlier parts' cached blocks: the workers are other processes on this GPU
    init_ray(None)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import bench/
    reports = []
    with forwarded_reports(reports.append) as callbacks:
        trainer = make_trainer(config, workers, gpus > 0, f"bench-train-pipeline-{os.getpid()}",
                               str(root / "ray_runs"), 0, 1, callbacks=callbacks, loop=_pipeline_loop)
        trainer.fit()
    if not reports:
        raise RuntimeError("the Ray Train run reported nothing")
    out = {"model": cfg["model"], "image_size": cfg["size"], "global_batch": global_batch, "image": "640x427 JPEG",
           "precision": "bf16" if device.type == "cuda" else "fp32", **reports[-1]}
    out["pipeline_over_ceiling"] = out["images_per_s"] / out["ceiling_images_per_s"]
    return out


def bench_predict_and_regions(cfg: dict, device: torch.device) -> dict:
    """predict's forward and the score_regions stage's scorer (:class:`RegionScorer`, 32 pairs per image), both
    at the pipeline's own precision (``placement.<stage>.precision: auto``: bf16 on CUDA); and what bf16
    changes there against fp32 (the same pairs scored both ways)."""
    from pipeline.classes.space import ClassSpace
    from pipeline.precision import autocast, effective, full_precision
    from pipeline.regions.pairs import Pairs
    from pipeline.regions.scorer import RegionScorer, ScoreParams

    model = _model(cfg, device).eval()
    b, s, n = cfg["batch"], cfg["size"], 32
    x = torch.randn(b, 3, s, s, device=device)
    rng = np.random.default_rng(0)

    def boxes():
        xy = rng.uniform(0, s * 0.6, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(s * 0.1, s * 0.4, (n, 2))], axis=1).astype(np.float32)

    pairs = [Pairs(boxes(), boxes(), rng.uniform(0.3, 1, n).astype(np.float32), rng.uniform(0.3, 1, n).astype(np.float32),
                   rng.integers(1, 80, n)) for _ in range(b)]
    sizes = [(float(s), float(s))] * b
    scorer = {p: RegionScorer(model, ScoreParams(), ClassSpace.hico(), precision=p) for p in ("auto", "fp32")}
    head = full_precision(model.classify)
    with torch.inference_mode(), autocast(device, "auto"):  # what ImageScorer runs
        predict_s = _timed(lambda: head(model.pooled(x)).float().cpu(), device, 3)
    regions_s = _timed(lambda: scorer["auto"].logits(x, pairs, sizes), device, 3)
    low, ref = (torch.sigmoid(scorer[p].logits(x, pairs, sizes)) for p in ("auto", "fp32"))
    top = [len(set(low[i * n:(i + 1) * n].flatten().topk(10).indices.tolist()) &
               set(ref[i * n:(i + 1) * n].flatten().topk(10).indices.tolist())) / 10 for i in range(b)]
    return {"image_size": s, "batch": b, "precision": effective("auto", device.type),
            "predict_images_per_s": b / predict_s, "pairs_per_image": n,
            "score_regions_images_per_s": b / regions_s, "score_regions_pairs_per_s": b * n / regions_s,
            "max_sigmoid_diff_vs_fp32": float((low - ref).abs().max()), "top10_overlap_vs_fp32": float(np.mean(top))}


def bench_mmdet(device: torch.device, tiny: bool) -> dict:
    try:
        import mmcv.ops  # noqa: F401  the compiled extension: fails here when mmcv was built without ops
        import mmdet  # noqa: F401
    except ImportError as e:
        return {"skipped": f"MMDetection stack not installed ({e}): make install-detect"}
    from mmcv.ops import nms, roi_align

    from pipeline.detection.mmdet_backend import MMDetDetector

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 400
    boxes = torch.cat([xy, xy + 20 + torch.rand(500, 2, generator=g) * 100], 1)
    scores = torch.rand(500, generator=g)
    feats = torch.rand(2, 16, 64, 64, generator=g)
    rois = torch.cat([torch.randint(0, 2, (100, 1), generator=g).float(), boxes[:100] / 8], 1)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_dev = nms(boxes.to(device), scores.to(device), 0.5)
    ra_cpu = roi_align(feats, rois, (7, 7), 1.0, 2)
    ra_dev = roi_align(feats.to(device), rois.to(device), (7, 7), 1.0, 2)
    out = {"nms_same_as_cpu": bool(torch.equal(keep_cpu, keep_dev.cpu())),
           "roi_align_max_abs_diff": float((ra_cpu - ra_dev.cpu()).abs().max())}
    scale = [320, 320] if tiny else [640, 640]
    start = time.perf_counter()
    det = MMDetDetector("rtmdet_tiny_8xb32-300e_coco", "random", device=str(device), test_scale=scale)
    out["detector_build_s"] = time.perf_counter() - start
    images = [np.random.default_rng(i).integers(0, 256, (427, 640, 3), dtype=np.uint8) for i in range(8)]
    seconds = _timed(lambda: det.predict(images), device, 2)
    out.update(detector="rtmdet_tiny (random weights)", test_scale=scale, images_per_s=len(images) / seconds)
    return out


def _allreduce_worker(rank: int, world: int, backend: str, numel: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    x = torch.full((numel,), float(rank + 1), device=device)
    dist.all_reduce(x)
    _sync(device)
    expected = world * (world + 1) / 2
    ok = bool(torch.all(x == expected))
    seconds = _timed(lambda: dist.all_reduce(x), device, 5)
    if rank == 0:
        size = numel * 4
        queue.put({"backend": backend, "ranks": world, "megabytes": size / 1e6, "sum_correct": ok,
                   "seconds": seconds, "bus_gb_per_s": 2 * (world - 1) / world * size / seconds / 1e9})
    dist.destroy_process_group()


def bench_allreduce(device: torch.device) -> dict:
    import socket

    import torch.multiprocessing as mp

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and gpus < 2:
        return {"skipped": f"{gpus} GPU: an all-reduce needs two or more"}
    backend, world, numel = ("nccl", gpus, 64 * 2**20) if gpus >= 2 else ("gloo", 2, 2**18)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allreduce_worker, args=(r, world, backend, numel, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    try:
        result = queue.get(timeout=120)
    finally:
        for p in procs:
            p.join(timeout=30)
    return result


def environment(device: torch.device) -> dict:
    import torchvision

    env = {"torch": torch.__version__, "torchvision": torchvision.__version__, "device": str(device),
           "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), gpus=torch.cuda.device_count(),
                   cuda=torch.version.cuda, peak_bf16_tflops=peak_tflops(device))
    return env


def run(device: torch.device, tiny: bool, steps: int | None = None) -> dict:
    cfg = dict(TINY if tiny else PAPER)
    if steps:
        cfg["steps"] = steps
    workers = 0 if tiny else max(0, min(16, (environment(device)["cpus"] or 1) - 1))
    results = {"environment": environment(device), "mode": "tiny" if tiny else "paper"}
    with tempfile.TemporaryDirectory() as tmp:
        parts = {"train": lambda: bench_train(cfg, device),
                 "train_pipeline": lambda: bench_train_pipeline(cfg, device, Path(tmp)),
                 "input_pipeline": lambda: bench_input_pipeline(cfg, device, Path(tmp), workers),
                 "predict_score_regions": lambda: bench_predict_and_regions(cfg, device),
                 "mmdet": lambda: bench_mmdet(device, tiny),
                 "allreduce": lambda: bench_allreduce(device)}
        for name, fn in parts.items():
            start = time.perf_counter()
            try:
                results[name] = fn()
            except Exception as e:  # recorded, and the other parts still run: the GPU is here for minutes
                results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            results[name]["wall_s"] = time.perf_counter() - start
            print(f"[bench gpu] {name}: {_line(results[name])}", flush=True)
    return results


def _line(r: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                     if k != "traceback")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"),
                    help="default: cuda when visible, else the CPU dry run (--device cpu --tiny)")
    ap.add_argument("--tiny", action="store_true", help="tiny model at 96 px (the test suite's dry run)")
    ap.add_argument("--steps", type=int, help="training steps timed (default 20; tiny 3)")
    ap.add_argument("--out", default="bench_gpu.json", help="JSON file of the results")
    args = ap.parse_args(argv or [])
    if args.device is None:  # `python -m bench` runs every benchmark: without a GPU this one is the dry run
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cpu" and not args.tiny:
            print("[bench gpu] no CUDA device: the dry run (--device cpu --tiny); figures say nothing about a GPU")
            args.tiny = True
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible (torch.cuda.is_available() is False)")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = run(torch.device(args.device), args.tiny, args.steps)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    print(f"[bench gpu] wrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

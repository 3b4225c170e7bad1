"""One command for a GPU you have for a few minutes: python -m bench gpu [--out bench_gpu.json]

Runs, in one process (no Ray, no DVC, random weights: nothing is downloaded), each part on its own so a
failure is recorded and the rest still runs:

1. ``train``: the paper recipe, ViT-B/16 at 672 px, bf16 autocast, batch 32, AdamW, LSE-Sign on 600 classes,
   a fixed number of steps on ready tensors: images/s, step time, peak GPU memory, model FLOPs per image
   (``torch.utils.flop_counter`` on one step) and MFU against the GPU's dense bf16 peak;
2. ``input_pipeline``: the training input pipeline on this machine's CPUs and GPU, 640x427 JPEGs to
   normalised 672 px batches on the device: the per-image PIL transform (``train.augment: pil``) and the
   split one (``batch``) with decoding in the loader or on the GPU (``placement.train.decode``);
3. ``predict`` and ``score_regions`` at 672 px: images/s, and pairs/s of the masked-attention scoring;
4. ``mmdet``: mmcv's compiled ops (nms, roi_align) on the device against the CPU, and one MMDetection
   (RTMDet-tiny) batch inference;
5. ``allreduce``: an NCCL all-reduce across the GPUs when there are two or more (bus bandwidth).

Writes a JSON file and prints a table. Under 8 minutes on one H100/H200-class GPU. ``--device cpu --tiny``
runs the same code on the tiny model at 96 px in about a minute (the test suite runs it, so it cannot rot).
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
import torch

# Dense bf16 tensor-core peak in TFLOP/s (vendor data sheets; SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
PAPER = {"model": "ViT-B-16", "size": 672, "batch": 32, "steps": 20, "classes": 600, "text_dim": 512}
TINY = {"model": "defr-tiny-vit", "size": 96, "batch": 4, "steps": 3, "classes": 600, "text_dim": 64}


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


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


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

    from pipeline.training.losses import lse_sign_loss

    model = _model(cfg, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-5, weight_decay=0.0)
    b, s, c = cfg["batch"], cfg["size"], cfg["classes"]
    x = torch.randn(b, 3, s, s, device=device)
    y = torch.where(torch.rand(b, c, device=device) < 0.01, 1.0, -1.0)

    def step(images=x, targets=y):
        opt.zero_grad(set_to_none=True)
        with _autocast(device):
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


def _jpegs(root: Path, n: int) -> list[str]:
    """n JPEGs of 640x427 (HICO's typical size): the shared photo when present, else smooth noise."""
    from PIL import Image

    photo = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "person.jpg"
    rng = np.random.default_rng(0)
    uris = []
    for i in range(n):
        if photo.exists():
            img = Image.open(photo).convert("RGB").rotate(int(rng.integers(-8, 8)))
        else:
            img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        uris.append(str(root / f"{i:03d}.jpg"))
        img.resize((640, 427), Image.BICUBIC).save(uris[-1], quality=90)
    return uris


def bench_input_pipeline(cfg: dict, device: torch.device, root: Path, workers: int) -> dict:
    from pipeline.model import ModelConfig
    from pipeline.training.recipe import _loader, train_data

    uris = _jpegs(root, 32)
    n = (8 if workers == 0 else 32) * cfg["batch"]  # enough batches that worker start-up is a small share
    targets = -np.ones((len(uris), cfg["classes"]), np.int8)
    indices = np.arange(n) % len(uris)
    mconf = ModelConfig(image_size=cfg["size"])
    out = {"images": n, "loader_workers": workers, "image": "640x427 JPEG"}
    for name, augment, decode in (("pil", "pil", "loader"), ("batch", "batch", "loader"),
                                  ("batch_decode_on_device", "batch", "device")):
        recipe = {"augment": augment, "decode": decode, "crop_scale": 0.5, "jitter": 0.4, "seed": 0,
                  "batch_size": cfg["batch"], "loader_workers": workers}
        data, collate, on_device = train_data(uris, targets, mconf, recipe, indices, 0, 0, device)

        def epoch():
            for images, _, _ in _loader(data, recipe, collate=collate):
                images = on_device(images, device) if on_device else images.to(device, non_blocking=True)
            _sync(device)

        out[f"{name}_images_per_s"] = n / _timed(epoch, device, 1)
    out["batch_over_pil"] = out["batch_images_per_s"] / out["pil_images_per_s"]
    return out


def bench_predict_and_regions(cfg: dict, device: torch.device) -> dict:
    from pipeline.regions import masked_vit as mv
    from pipeline.regions.masks import cls_mask_row, pair_coverage

    model = _model(cfg, device).eval()
    b, s, pairs = cfg["batch"], cfg["size"], 32
    x = torch.randn(b, 3, s, s, device=device)
    rng = np.random.default_rng(0)

    def boxes():
        xy = rng.uniform(0, s * 0.6, (b * pairs, 2))
        return np.concatenate([xy, xy + rng.uniform(s * 0.1, s * 0.4, (b * pairs, 2))], axis=1)

    keep = pair_coverage(boxes(), boxes(), np.array([s, s]), model.visual.grid_size)
    rows = cls_mask_row(keep, device=device)
    pair_image = torch.arange(b, device=device).repeat_interleave(pairs)
    with torch.inference_mode(), _autocast(device):
        predict_s = _timed(lambda: model(x), device, 3)
        regions_s = _timed(lambda: mv.shared_prefix_logits(model.visual, model.classify, x, pair_image, rows, 1),
                           device, 3)
    return {"image_size": s, "batch": b, "predict_images_per_s": b / predict_s, "pairs_per_image": pairs,
            "score_regions_images_per_s": b / regions_s, "score_regions_pairs_per_s": b * pairs / regions_s}


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

"""Input pipeline cost per CPU core: python -m bench loader

Today's per-image PIL transform (``train.augment: pil``) against the split one (``train.augment: batch``:
the loader reads, decodes and crops; the device resizes, flips, jitters and normalises whole batches), in
the same run, one thread, in CPU seconds of this process (``time.process_time``: insensitive to other jobs
on a shared machine, and exactly "per core"), on a real ~640x427 photo (../shared/data/photos/person.jpg,
else a generated JPEG of that size) at the paper's 672 px, and on a demo-sized image at the demo's 96 px.
Reported: images/s per core of the CPU side (what a GPU run's loader does), of the device side when that
device is the CPU too (the demo), and of both together; then the loader side through one DataLoader
process against Ray Data ``map_batches`` on one CPU (the Ray Train ingest alternative), wall time.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "person.jpg"


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> tuple[Path, str]:
    """A JPEG of ``size``: the shared photo resized (real image statistics) or, without it, smooth noise."""
    if PHOTO.exists():
        img, what = Image.open(PHOTO).convert("RGB"), f"{PHOTO.name}"
    else:
        rng = np.random.default_rng(seed)
        img, what = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)), "generated noise"
    img.resize(size, Image.BICUBIC).save(path, quality=90)
    return path, f"{what} at {size[0]}x{size[1]}"


def _per_s(fn, n: int, min_s: float = 1.0) -> float:
    """Calls per CPU second of this process (one thread: calls per second of one core)."""
    fn()  # warm-up
    done, start = 0, time.process_time()
    while done < n or time.process_time() - start < min_s:
        fn()
        done += 1
    return done / (time.process_time() - start)


def measure(path: str, size: int, n: int = 20, batch: int = 32) -> dict[str, float]:
    """images/s on one core: old (PIL, all per image), new CPU side, new device side on the CPU, new total."""
    from pipeline.model import ModelConfig
    from pipeline.training.augment import train_transform
    from pipeline.training.batch_augmentation import BatchAugmentation, CropReader, read_bytes
    from pipeline.training.dataset import load_image

    config = ModelConfig(image_size=size)
    old = train_transform(config, 0.5, 0.4)
    reader, shipper = CropReader(size, 0.5), CropReader(size, 0.5, decode="device")
    torch.manual_seed(0)
    out = {"old": _per_s(lambda: old(load_image(path)), n),
           "new_cpu": _per_s(lambda: reader(read_bytes(path)), n),
           "new_cpu_device_decode": _per_s(lambda: shipper(read_bytes(path)), n)}
    items = [reader(read_bytes(path)) for _ in range(batch)]
    augment = BatchAugmentation(size, config.mean, config.std, 0.4)
    out["new_device_on_cpu"] = batch * _per_s(lambda: augment(items, torch.device("cpu")), 1)
    out["new_total_on_cpu"] = 1 / (1 / out["new_cpu"] + 1 / out["new_device_on_cpu"])
    return out


def ray_data_against_dataloader(path: str, size: int, n: int = 512, batch: int = 32) -> dict[str, float]:
    """Wall images/s of the loader side (read + decode + crop) through one DataLoader process and through
    Ray Data (``map_batches`` on one CPU of a fresh local Ray, iterated as Ray Train's
    ``get_dataset_shard(...).iter_batches`` iterates), start-up excluded (one warm-up pass each)."""
    import ray

    from pipeline.training.batch_augmentation import CropReader, collate_crops, read_bytes
    from pipeline.training.dataset import ImageDataset

    reader = CropReader(size, 0.5)
    data = ImageDataset([path] * n, np.zeros((n, 1), np.int8), reader, read=read_bytes)

    def dataloader():
        for _ in torch.utils.data.DataLoader(data, batch_size=batch, num_workers=1, collate_fn=collate_crops,
                                             persistent_workers=False):
            pass

    def crops(rows: dict) -> dict:
        out = np.empty(len(rows["path"]), dtype=object)  # ragged crops: one array per image
        for i, p in enumerate(rows["path"]):
            out[i] = reader(read_bytes(p))[0].numpy()
        return {"crop": out}

    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset progress lines
    from pipeline.distributed import init_ray

    init_ray(None, num_cpus=1)  # a local Ray of its own: loopback only, token authentication
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        ds = ray.data.from_items([{"path": path}] * n).map_batches(crops, batch_size=batch)

        def ray_data():
            for _ in ds.iter_batches(batch_size=batch, batch_format="numpy"):
                pass

        out = {}
        for name, fn in (("dataloader", dataloader), ("ray_data", ray_data)):
            fn()
            start = time.perf_counter()
            fn()
            out[name] = n / (time.perf_counter() - start)
        return out
    finally:
        ray.shutdown()


def main() -> None:
    import tempfile

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        for size, shape in ((672, (640, 427)), (96, (160, 128))):
            path, what = _image(Path(tmp) / f"img{size}.jpg", shape)
            r = measure(str(path), size)
            print(f"{size} px, {what}, 1 thread (images/s per core):")
            print(f"  today's PIL transform (decode + crop + resize + flip + jitter + normalise): {r['old']:.1f}")
            print(f"  new, loader side (read + decode + crop): {r['new_cpu']:.1f} -> "
                  f"{r['new_cpu'] / r['old']:.1f}x today's")
            print(f"  new, loader side with decode: device (read + header + box): {r['new_cpu_device_decode']:.0f}")
            print(f"  new, device side run on the CPU (resize + flip + jitter + normalise, batch 32): "
                  f"{r['new_device_on_cpu']:.1f}; loader + device both on the CPU: {r['new_total_on_cpu']:.1f} "
                  f"({r['new_total_on_cpu'] / r['old']:.2f}x today's)", flush=True)
        path, what = _image(Path(tmp) / "ray.jpg", (640, 427))
        r = ray_data_against_dataloader(str(path), 672)
        print(f"loader side at 672 px, one CPU, wall images/s: DataLoader (1 process) {r['dataloader']:.0f}; "
              f"Ray Data map_batches (1 CPU) {r['ray_data']:.0f} -> Ray Data / DataLoader = "
              f"{r['ray_data'] / r['dataloader']:.2f}", flush=True)


if __name__ == "__main__":
    main()

"""detect: CPU throughput of RTMDet-tiny on the inference engine's Ray Data pool, and the mmcv wheel build /
re-install.

    python -m bench detect

Baseline measured in the same run: the same detector in-process (one torch thread, batches of 8,
decoding included, model build excluded). The Ray runs include actor start-up and model build, as a
stage run does. Random weights (no download): speed only, the boxes mean nothing.
Install figures: the build time recorded by scripts/install_mmdet.sh in the wheel cache, and the time
to install the cached wheel (pip --no-deps into a scratch folder: what a cache hit costs).
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

N_IMAGES = 64
SIZE = (320, 256)        # demo-like small images, upscaled to the 320 test scale
CONFIG = "rtmdet_tiny_8xb32-300e_coco"
CACHE = Path(os.environ.get("DEFR_WHEEL_CACHE", Path.home() / ".cache" / "defr-pipeline" / "wheels"))


def _images(root: Path) -> pa.Table:
    rng = np.random.default_rng(0)
    uris = []
    for i in range(N_IMAGES):
        arr = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        arr[40:200, 60 + i % 50:160 + i % 50] = (200, 120, 40)  # a flat block: something to fire on
        uris.append(str(root / f"{i:04d}.jpg"))
        Image.fromarray(arr).save(uris[-1], quality=90)
    return pa.table({"image_id": list(range(N_IMAGES)), "uri": uris, "width": [SIZE[0]] * N_IMAGES,
                     "height": [SIZE[1]] * N_IMAGES})


def _detector_figures(images: pa.Table) -> None:
    import numpy as np
    import torch

    from pipeline.datasets.images import read_rgb
    from pipeline.detection.mmdet_backend import MMDetDetector
    from pipeline.inference.detector_predictor import DetectorPredictor
    from pipeline.placement import Placement
    from pipeline.inference.engine import run_predictor

    torch.set_num_threads(1)
    start = time.perf_counter()
    det = MMDetDetector(CONFIG, "random", test_scale=[320, 320])
    build = time.perf_counter() - start
    det.predict([np.asarray(read_rgb(images["uri"][0].as_py()))])  # warm-up
    start = time.perf_counter()
    rows = images.to_pylist()
    for i in range(0, len(rows), 8):
        det.predict([np.asarray(read_rgb(r["uri"], (r["width"], r["height"]))) for r in rows[i:i + 8]])
    base = N_IMAGES / (time.perf_counter() - start)
    print(f"in-process baseline (1 thread, batch 8, 320 px): {base:.2f} images/s; model build {build:.1f} s")

    from pipeline.distributed import init_ray

    init_ray(None)  # Ray itself starts outside the timings, as on a running cluster
    spec = {"config": CONFIG, "checkpoint": "random", "test_scale": [320, 320]}
    walls = {}
    for actors in (1, 2):
        start = time.perf_counter()
        run = run_predictor(images, DetectorPredictor, {"spec": spec},
                            Placement(batch_size=8, actors=actors, cpus_per_actor=1, device="cpu"), ray=True,
                            desc=f"detect, {actors} actor(s)")
        walls[actors] = time.perf_counter() - start
        assert run.table.num_rows == N_IMAGES
        print(f"Ray Data (the inference engine), {actors} CPU actor(s): {N_IMAGES / walls[actors]:.2f} images/s "
              f"including actor start ({walls[actors]:.1f} s for {N_IMAGES}), "
              f"{N_IMAGES / walls[actors] / base:.2f}x the in-process baseline, "
              f"{walls[1] / walls[actors]:.2f}x 1 actor; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
    import ray

    ray.shutdown()


def _install_figures() -> None:
    records = sorted(glob.glob(str(CACHE / "mmcv-2.1.0-*" / "BUILD_TIME.txt")))
    for rec in records:
        print(f"mmcv wheel build ({Path(rec).parent.name}): {Path(rec).read_text().strip()}")
    wheels = sorted(glob.glob(str(CACHE / "mmcv-2.1.0-*" / "mmcv-*.whl")))
    if not wheels:
        print(f"no cached mmcv wheel under {CACHE}: run scripts/install_mmdet.sh first")
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", tmp, wheels[0]],
                       check=True, capture_output=True)
        t = time.perf_counter() - start
    print(f"cached mmcv wheel re-install ({Path(wheels[0]).stat().st_size / 1e6:.0f} MB): {t:.1f} s")


def main() -> None:
    try:
        import mmdet.apis  # noqa: F401
    except ImportError:
        print("MMDetection stack not installed (scripts/install_mmdet.sh): detector figures skipped")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _detector_figures(_images(Path(tmp)))
    _install_figures()


if __name__ == "__main__":
    main()

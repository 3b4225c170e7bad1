"""serve: `defr serve` (Ray Serve) under load: requests/s and latency at 1, 4 and 16 concurrent clients, against
`defr detect`'s engine on the same photos in one process, and the server's memory after a long load.

    python -m bench serve                      # a 60 s load for the memory figure
    python -m bench serve --soak-s 600         # the 10-minute figure (docs/serving.md)

Photos: ../shared/data/photos (DEFR_SHARED_PHOTOS) with their hand-drawn boxes, sent in turn. Model: a tiny
random ViT unless --model (DEMO ONLY: speed and memory only; its scores mean nothing). Baselines measured in
the same run: (1) the engine in this process (``PoolWorker`` + ``PairPredictor``, what `defr detect` runs:
one model loaded once, batches of 8, decoding included, JSON-free), images/s; (2) the `defr detect` command
on 48 photos in this process, wall time including its model load. The server: one CPU replica on a local Ray
(the default `defr serve`), JSON answers (no picture), clients in this process (they share the machine's
cores with the server: on a 2-core machine the figures are a floor).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("DEFR_SHARED_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
LEVELS = (1, 4, 16)


def _model(root: Path) -> Path:
    from pipeline.classes.space import ClassSpace
    from pipeline.model import ModelConfig, build_model, save_checkpoint

    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=600,
                                    classes=ClassSpace.hico().to_list(), metadata={"demo_only": True}), None, seed=1)
    save_checkpoint(model, root / "model")
    return root / "model"


def _photos() -> list[tuple[str, bytes, list]]:
    boxes = json.loads((PHOTOS / "boxes.json").read_text())
    return [(name, (PHOTOS / name).read_bytes(), entries) for name, entries in sorted(boxes.items())]


def _engine_baseline(model: Path, photos, n: int = 48) -> float:
    """images/s of the engine in this process (the model loaded once, outside the timing)."""
    import torch
    from PIL import Image

    from pipeline.classes.coco import coco80_label
    from pipeline.inference.engine import PoolWorker
    from pipeline.inference.pair_predictor import PairPredictor

    torch.set_num_threads(1)  # as one CPU replica
    kwargs = {"checkpoint": str(model), "pairs": {}, "scoring": {"top_k": 100},
              "boxes": {"score_floor": 0.05, "max_per_image": 100}}
    worker = PoolWorker(PairPredictor, kwargs, "cpu", 1)

    def rows(k0, k1):
        out = []
        for k in range(k0, k1):
            name, data, entries = photos[k % len(photos)]
            image = Image.open(io.BytesIO(data)).convert("RGB")
            out.append((image, {"image_id": k, "uri": name, "name": name,
                                "boxes": np.asarray([e["box"] for e in entries], np.float32).reshape(-1).tolist(),
                                "labels": [coco80_label(e["category"]) for e in entries],
                                "scores": [e["score"] for e in entries]}))
        return out

    batch = rows(0, 8)
    worker.run_decoded([b[0] for b in batch], [b[1] for b in batch])  # warm-up
    start = time.perf_counter()
    for k in range(0, n, 8):  # decoding included, as the server decodes each upload
        batch = rows(k, k + 8)
        worker.run_decoded([b[0] for b in batch], [b[1] for b in batch])
    return n / (time.perf_counter() - start)


def _detect_command(model: Path, root: Path, n: int = 48) -> float:
    """Seconds of `defr detect` on ``n`` photos (the three, copied) in this process, model load included."""
    import shutil

    import pipeline.cli.commands as cli

    folder = root / "photos"
    folder.mkdir()
    boxes = json.loads((PHOTOS / "boxes.json").read_text())
    copies = {}
    for k in range(n):
        name = sorted(boxes)[k % len(boxes)]
        copy = f"{k:03d}_{name}"
        shutil.copy(PHOTOS / name, folder / copy)
        copies[copy] = boxes[name]
    (root / "boxes.json").write_text(json.dumps(copies))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-photo lines
        code = cli.main(["detect", str(folder), "--model", str(model), "--boxes", str(root / "boxes.json"), "--out",
                         str(root / "out"), "--local", "--no-pictures"])
    assert code == 0
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: Path, root: Path) -> tuple[subprocess.Popen, str]:
    import requests

    port = _free_port()
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"defr serve did not start: {(root / 'serve.log').read_text()[-2000:]}")


def _load(url: str, photos, clients: int, *, requests_total: int | None = None, seconds: float | None = None):
    """``clients`` threads posting the photos in turn until ``requests_total`` answers or ``seconds`` pass.
    Returns (latencies of the 200 answers, errors, wall seconds)."""
    import requests

    lock, latencies, errors = threading.Lock(), [], []
    sent = [0]
    stop = time.perf_counter() + seconds if seconds else None

    def client():
        session = requests.Session()
        while True:
            with lock:
                if (requests_total and sent[0] >= requests_total) or (stop and time.perf_counter() >= stop):
                    return
                k = sent[0]
                sent[0] += 1
            name, data, entries = photos[k % len(photos)]
            t = time.perf_counter()
            try:
                r = session.post(f"{url}/v1/detect", files={"image": (name, data)}, data={"boxes": json.dumps(entries)},
                                 timeout=120)
                ok = r.status_code == 200
            except requests.RequestException as e:
                ok, r = False, e
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors.append(str(r))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.asarray(latencies), errors, time.perf_counter() - start


def _memory_mb(proc: subprocess.Popen) -> tuple[float, float, float]:
    """(the replica's RSS, its unique memory (USS: what ending it would free), the whole process tree's USS:
    driver, Ray, Serve's controller and proxy, replica), MB."""
    import psutil

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    rss = uss = total = 0.0
    for p in tree:
        try:
            info = p.memory_full_info()
            total += info.uss / 2 ** 20
            if "ServeReplica" in " ".join(p.cmdline()):
                rss, uss = rss + info.rss / 2 ** 20, uss + info.uss / 2 ** 20
        except psutil.Error:
            pass
    return rss, uss, total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench serve")
    ap.add_argument("--soak-s", type=float, default=60, help="seconds of load (4 clients) for the memory figure")
    ap.add_argument("--model", help="a DEFR checkpoint (default: a tiny random ViT, DEMO ONLY)")
    ap.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    args = ap.parse_args(argv or [])
    if not (PHOTOS / "boxes.json").exists():
        sys.exit(f"bench serve: no photos at {PHOTOS} (set DEFR_SHARED_PHOTOS)")
    photos = _photos()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        model = Path(args.model) if args.model else _model(root)
        base = _engine_baseline(model, photos)
        print(f"baseline, the engine in this process (1 thread, batches of 8, decoding included): {base:.1f} images/s")
        detect_s = _detect_command(model, root)
        print(f"baseline, `defr detect` on 48 photos in this process (model load included): {detect_s:.1f} s, "
              f"{48 / detect_s:.1f} images/s")
        started = time.perf_counter()
        proc, url = _start(model, root)
        print(f"defr serve: ready in {time.perf_counter() - started:.0f} s (local Ray, Serve, one CPU replica)")
        try:
            _load(url, photos, 4, requests_total=16)  # warm-up
            for clients in LEVELS:
                lat, errors, wall = _load(url, photos, clients, requests_total=args.requests)
                rate = len(lat) / wall
                print(f"{clients:>2} client(s): {rate:6.1f} requests/s ({rate / base:.2f}x the engine in-process, "
                      f"{rate / (48 / detect_s):.2f}x `defr detect`), latency p50 {np.percentile(lat, 50) * 1e3:.0f} ms, "
                      f"p99 {np.percentile(lat, 99) * 1e3:.0f} ms, {len(errors)} error(s)")
            before = _memory_mb(proc)
            lat, errors, wall = _load(url, photos, 4, seconds=args.soak_s)
            after = _memory_mb(proc)
            print(f"memory after {wall:.0f} s of load at 4 clients ({len(lat)} answers, {len(lat) / wall:.1f}/s, "
                  f"{len(errors)} error(s), p99 {np.percentile(lat, 99) * 1e3:.0f} ms): replica RSS {before[0]:.0f} -> "
                  f"{after[0]:.0f} MB, USS {before[1]:.0f} -> {after[1]:.0f} MB; whole server (driver, Ray, Serve, "
                  f"replica) USS {before[2]:.0f} -> {after[2]:.0f} MB")
        finally:
            started = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            print(f"defr serve: SIGTERM -> exit {code} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

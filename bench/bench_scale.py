"""Every stage at growing dataset sizes: wall time, CPU time, peak memory and output size, with the growth
exponent of each (DEMO data, tiny model; docs/performance.md "At the paper's size").

    python -m bench scale                              # scales 1, 5, 25 and hico (hours on 2 cores)
    python -m bench scale --scales 1,5 --stages prepare,predict

Scale s = s x the demo (1,800 train + 400 test images); ``hico`` = HICO's 38,116 + 9,658. Every scale uses
images of about 640x480 (HICO's size; the demo's own are 160x128), generated in parallel once and kept in
``--cache`` (bench/large_demo.py). The stages run as ``dvc repro`` runs them (``python -m stages.X``,
params.yaml of the repository with ``prepare.root`` pointed at the data and ``train.epochs: 1``), all
joining one local Ray head started first, as ``make demo`` does. Training is measured per epoch at the
demo model's 96 px.

Measured per stage from the outside, every 0.25 s, over the stage process, its children and the Ray
head's workers (where the actors and Ray Train workers run): wall time; CPU time (user + system of every
process seen, the last sample of a process that ended); peak resident memory (sum over those processes;
Ray's shared object store counts once per process that maps it, so this is an upper bound); the bytes of
the stage's outputs. Results accumulate in ``<work>/scale.json``; the table (Markdown) and the log-log
plot (``<work>/scale.png``) are written from everything measured so far, and the exponent of each stage is
the least-squares slope of log(wall) and log(peak memory) over log(images).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = (1800, 400)
HICO = (38116, 9658)
STAGES = ("prepare", "embed_text", "train", "predict", "detect", "score_regions", "evaluate")
ARGS = {  # what dvc.yaml passes (paths relative to the scale's project folder)
    "prepare": ["--out", "data/prepared"],
    "embed_text": ["--classes", "data/prepared/classes.parquet", "--out", "data/text_embeddings.parquet",
                   "--plots", "plots/embeddings"],
    "train": ["--images", "data/prepared/images.parquet", "--classes", "data/prepared/classes.parquet",
              "--text-embeddings", "data/text_embeddings.parquet", "--model-out", "models/defr",
              "--history", "plots/train/history.csv", "--metrics", "metrics/train.json"],
    "predict": ["--images", "data/prepared/images.parquet", "--model", "models/defr",
                "--out", "data/image_scores.parquet"],
    "detect": ["--images", "data/prepared/images.parquet", "--pairs", "data/prepared/pairs.parquet",
               "--out", "data/detections.parquet", "--rejects", "data/detect_rejects.parquet"],
    "score_regions": ["--model", "models/defr", "--detections", "data/detections.parquet",
                      "--images", "data/prepared/images.parquet", "--out", "data/hoi_detections.parquet",
                      "--plots", "plots/attention", "--rejects", "data/score_regions_rejects.parquet"],
    "evaluate": ["--prepared", "data/prepared", "--image-scores", "data/image_scores.parquet",
                 "--hoi-detections", "data/hoi_detections.parquet", "--metrics", "metrics",
                 "--plots", "plots/eval", "--report", "reports/evaluation.md"],
}
OUTPUTS = {
    "prepare": ["data/prepared"], "embed_text": ["data/text_embeddings.parquet"],
    "train": ["models/defr"], "predict": ["data/image_scores.parquet"], "detect": ["data/detections.parquet"],
    "score_regions": ["data/hoi_detections.parquet"], "evaluate": ["metrics", "reports"],
}


def sizes(scale: str) -> tuple[int, int]:
    if scale == "hico":
        return HICO
    s = float(scale)
    return round(DEMO[0] * s), round(DEMO[1] * s)


def dataset(cache: Path, scale: str, image_size: tuple[int, int]) -> tuple[Path, float]:
    """The raw data of a scale (generated once); returns its folder and the seconds generating took now."""
    from bench.large_demo import generate_large

    n_train, n_test = sizes(scale)
    folder = cache / f"hico-format-{n_train}-{n_test}-{image_size[0]}x{image_size[1]}"
    if (folder / "DONE").exists():
        return folder, 0.0
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    generate_large(folder, n_train, n_test, image_size=image_size)
    (folder / "DONE").write_text("complete\n")
    return folder, time.perf_counter() - start


def _is_worker(proc: psutil.Process) -> bool:
    """A Ray worker process (actors, tasks, Ray Train workers), not the head's own services."""
    try:
        return proc.name().startswith("ray::") or any("default_worker.py" in a for a in proc.cmdline())
    except psutil.Error:
        return False


class Sampler:
    """CPU seconds and peak resident memory of a stage: its process tree plus the Ray head's workers.

    The head's services (GCS, raylet, dashboard) are left out; workers that were already running when the
    stage started count only with what they used and held beyond that moment.
    """

    def __init__(self, stage_pid: int, head_pid: int | None, period: float = 0.25):
        self.stage_pid, self.head_pid, self.period = stage_pid, head_pid, period
        self.cpu: dict[int, float] = {}
        self.base_cpu: dict[int, float] = {}
        self.base_rss = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        for proc in self._procs():
            try:
                self.base_cpu[proc.pid] = self._cpu(proc)
                self.base_rss += proc.memory_info().rss
            except psutil.Error:
                pass
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def _procs(self) -> list[psutil.Process]:
        out = []
        for pid, only_workers in ((self.stage_pid, False), (self.head_pid, True)):
            if pid is None:
                continue
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            out += [p for p in tree if _is_worker(p)] if only_workers else tree
        return out

    def _sample(self) -> None:
        rss = 0
        for proc in self._procs():
            try:
                self.cpu[proc.pid] = self._cpu(proc)
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, rss - self.base_rss)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._sample()
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return sum(v - self.base_cpu.get(pid, 0.0) for pid, v in self.cpu.items())


def du(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def project(work: Path, scale: str, raw: Path) -> Path:
    """A folder with the repository's params.yaml pointed at ``raw`` (train: one epoch)."""
    folder = work / f"scale-{scale}"
    folder.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"]["root"] = str(raw)
    params["train"]["epochs"] = 1
    params["train"]["restart_epochs"] = 1
    params["placement"]["train"]["storage_path"] = str(folder / "runs")
    params["placement"]["embed_text"]["cache"] = ""  # measured, not read from the cache
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run_stage(folder: Path, stage: str, env: dict, head_pid: int | None) -> dict:
    log = folder / "logs" / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", f"stages.{stage}", "--params", str(folder / "params.yaml"), *ARGS[stage]]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
        with Sampler(proc.pid, head_pid) as sampler:
            rc = proc.wait()
    wall = time.perf_counter() - start
    if rc != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"bench scale: {stage} failed (exit {rc}) in {folder}; log {log}:\n{tail}")
    return {"wall_s": round(wall, 2), "cpu_s": round(sampler.cpu_s, 2),
            "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
            "output_mb": round(du([folder / p for p in OUTPUTS[stage]]) / 2**20, 2)}


def exponent(x: list[float], y: list[float]) -> float | None:
    if len(x) < 2 or min(y) <= 0:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def table(rows: list[dict]) -> str:
    scales = sorted({r["images"] for r in rows})
    lines = ["| stage | " + " | ".join(f"{n:,} images" for n in scales)
             + " | exponent: time (all sizes / two largest) | CPU time (two largest) | memory (all sizes) |",
             "|---|" + "---|" * (len(scales) + 3)]
    for stage in ["generate", *STAGES]:
        mine = {r["images"]: r for r in rows if r["stage"] == stage}
        if not mine:
            continue
        cells = []
        for n in scales:
            r = mine.get(n)
            cells.append("" if r is None else
                         f"{r['wall_s']:.0f} s, {r['cpu_s']:.0f} cpu-s, {r['peak_rss_mb']:.0f} MB, out {r['output_mb']:.1f} MB")
        ns = sorted(mine)
        # Over all sizes the small ones are mostly start-up (Ray, model load); the two largest show how the
        # per-image work grows.
        et = exponent(ns, [mine[n]["wall_s"] for n in ns])
        et2 = exponent(ns[-2:], [mine[n]["wall_s"] for n in ns[-2:]])
        ec2 = exponent(ns[-2:], [mine[n]["cpu_s"] for n in ns[-2:]]) if stage != "generate" else None
        em = exponent(ns, [mine[n]["peak_rss_mb"] for n in ns]) if stage != "generate" else None
        fmt = lambda e: "" if e is None else f"{e:.2f}"  # noqa: E731
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {fmt(et)} / {fmt(et2)} | {fmt(ec2)} | {fmt(em)} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        mine = sorted((r["images"], r["wall_s"], r["peak_rss_mb"]) for r in rows if r["stage"] == stage)
        if mine:
            n, w, m = zip(*mine)
            a.loglog(n, w, "o-", label=stage)
            b.loglog(n, m, "o-", label=stage)
    if rows:
        n = np.array(sorted({r["images"] for r in rows}), dtype=float)
        w0 = min(r["wall_s"] for r in rows if r["images"] == n[0])
        a.loglog(n, w0 * n / n[0], "k:", label="linear")
    a.set(xlabel="images (train + test)", ylabel="wall time (s)", title="time per stage")
    b.set(xlabel="images (train + test)", ylabel="peak resident memory (MB)", title="memory per stage")
    a.legend(fontsize=7)
    fig.suptitle("bench scale: DEMO data at 640x480, tiny model (2-core machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,5,25,hico", help="comma-separated: multiples of the demo, or hico")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--image-size", default="640x480", help="max width x height of the generated images")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "defr-pipeline" / "bench-scale"),
                    help="where the data, the runs and scale.json live")
    ap.add_argument("--report-only", action="store_true", help="print the table and redraw the plot from scale.json")
    args = ap.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        sys.exit(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    image_size = tuple(int(v) for v in args.image_size.lower().split("x"))
    work = Path(args.work).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "scale.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []

    def record(row: dict) -> None:
        rows[:] = [r for r in rows if (r["stage"], r["images"]) != (row["stage"], row["images"])] + [row]
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(results_path)
        print(json.dumps(row), flush=True)

    if args.report_only:
        print(table(rows))
        plot(rows, work / "scale.png")
        return

    from pipeline.distributed import LocalHead

    head = LocalHead()
    head.start()
    env = {**os.environ, **head.env, "RAY_ADDRESS": head.address, "PYTHONPATH": str(ROOT),
           "DEFR_LOG_DIR": str(work / "logs")}
    head_pid = head._head.pid if head._head else None  # `ray start --block`: its services and workers
    try:
        for scale in [s for s in args.scales.split(",") if s]:
            n_train, n_test = sizes(scale)
            raw, gen_s = dataset(work / "data", scale, image_size)
            if gen_s:
                record({"stage": "generate", "scale": scale, "images": n_train + n_test, "wall_s": round(gen_s, 1),
                        "cpu_s": 0.0, "peak_rss_mb": 0.0, "output_mb": round(du([raw]) / 2**20, 1)})
            folder = project(work, scale, raw)
            for stage in stages:
                record({"stage": stage, "scale": scale, "images": n_train + n_test,
                        **run_stage(folder, stage, env, head_pid)})
    finally:
        head.stop()
    print("\n" + table(rows))
    plot(rows, work / "scale.png")
    print(f"\nresults: {results_path}; plot: {work / 'scale.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])

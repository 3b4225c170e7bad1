"""video: `defr detect` on a 10-minute 720p clip (frames/s, peak memory, memory over the run), against the
image path of `defr detect` on frames of the same clip saved as JPEGs, in the same run.

    python -m bench video                         (10 minutes of 1280x720 at 30 fps, sampled at --fps 5)
    python -m bench video --minutes 1 --fps 10    (a shorter look)

The clip is made here with PyAV (libx264, ultrafast) once and cached in ~/.cache/defr-pipeline/bench
(DEFR_BENCH_CACHE): a slow pan over ../shared/data/photos/person.jpg scaled to 1400 px wide, with its
hand-drawn boxes moved along in a boxes table (image, frame, category, box, score) for every frame. The
model is the demo's: models/defr when it is there, else its architecture (defr-tiny-vit at 96 px) with
random weights and HICO's 600 classes (DEMO ONLY: the scores mean nothing; the speed is the demo model's).
Each run is the `defr` command in a child process (`--local`, CPU), so its peak memory is its own; its
resident memory is polled every 0.5 s to show that it stays flat while the clip streams through.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("DEFR_SHARED_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
CACHE = Path(os.environ.get("DEFR_BENCH_CACHE", Path.home() / ".cache" / "defr-pipeline" / "bench"))
W, H, WIDE = 1280, 720, 1400


def _pan(k: int) -> tuple[int, int]:
    """Top-left corner of frame k's window in the scaled photo: a slow sway, never leaving it."""
    return int(60 + 60 * np.sin(k / 150)), int(100 + 80 * np.sin(k / 230))


def make_clip(minutes: float, fps: int) -> tuple[Path, Path]:
    """The cached clip and its boxes table (made the first time: about 6 minutes for 10 minutes at 30 fps)."""
    import av
    from PIL import Image

    clip = CACHE / f"pan_{minutes:g}min_{W}x{H}_{fps}fps.mp4"
    table = clip.with_suffix(".boxes.csv")
    if clip.exists() and table.exists():
        return clip, table
    CACHE.mkdir(parents=True, exist_ok=True)
    photo = Image.open(PHOTOS / "person.jpg").convert("RGB")
    scale = WIDE / photo.width
    wide = np.asarray(photo.resize((WIDE, round(photo.height * scale))))
    boxes = json.loads((PHOTOS / "boxes.json").read_text())["person.jpg"]
    n = round(minutes * 60 * fps)
    start = time.perf_counter()
    tmp_clip, tmp_table = clip.with_suffix(".tmp.mp4"), table.with_suffix(".tmp.csv")
    with av.open(str(tmp_clip), "w") as out, open(tmp_table, "w") as rows:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        rows.write("image,frame,category,box,score\n")
        for k in range(n):
            x, y = _pan(k)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[y:y + H, x:x + W]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
            for b in boxes:
                box = [round(b["box"][0] * scale - x, 1), round(b["box"][1] * scale - y, 1),
                       round(b["box"][2] * scale - x, 1), round(b["box"][3] * scale - y, 1)]
                rows.write(f'{clip.name},{k},{b["category"]},"{box}",{b["score"]}\n')
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp_table, table)
    os.replace(tmp_clip, clip)
    print(f"clip: {n} frames of {W}x{H} at {fps} fps ({minutes:g} min) made in {time.perf_counter() - start:.0f} s: {clip}")
    return clip, table


def _model(root: Path) -> tuple[str, str]:
    if (ROOT / "models" / "defr" / "config.json").exists():
        return str(ROOT / "models" / "defr"), "models/defr (the demo's trained model, DEMO ONLY)"
    from pipeline.classes.space import ClassSpace
    from pipeline.model import ModelConfig, build_model, save_checkpoint

    space = ClassSpace.hico()
    model = build_model(ModelConfig(model_name="defr-tiny-vit", image_size=96, init="random", num_classes=len(space),
                                    classes=space.to_list(), metadata={"demo_only": True}), None)
    return str(save_checkpoint(model, root / "demo_arch")), "defr-tiny-vit at 96 px, random weights (the demo's architecture, DEMO ONLY)"


def run_defr(argv: list[str], log: Path) -> dict:
    """The `defr` command in a child process: wall seconds, CPU seconds (user + system, all its threads: less
    disturbed by other jobs on a shared machine than wall time), its own peak resident memory and its
    resident memory polled every 0.5 s (MiB)."""
    import psutil

    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT, stdout=out,
                                 stderr=subprocess.DEVNULL)
    proc, samples = psutil.Process(child.pid), []
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            samples.append((time.perf_counter() - start, proc.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.5)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"defr {' '.join(argv)} failed:\n{log.read_text()}")
    return {"seconds": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024, "samples": samples}


def _frames_as_jpegs(clip: Path, table: Path, folder: Path, every: int, count: int) -> Path:
    """``count`` frames of the clip, one every ``every`` decoded frames, as JPEGs with a boxes JSON."""
    import av

    folder.mkdir(parents=True)
    rows = [line.split(",", 3) for line in table.read_text().splitlines()[1:]]
    by_frame: dict[int, list] = {}
    for _, frame, category, rest in rows:
        box, score = rest.rsplit(",", 1)
        by_frame.setdefault(int(frame), []).append({"category": category, "box": json.loads(box.strip('"')),
                                                    "score": float(score)})
    doc = {}
    with av.open(str(clip)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            if k % every == 0:
                frame.to_image().save(folder / f"frame_{k:06d}.jpg", quality=92)
                doc[f"frame_{k:06d}.jpg"] = by_frame[k]
                if len(doc) == count:
                    break
    boxes = folder.parent / "frames_boxes.json"
    boxes.write_text(json.dumps(doc))
    return boxes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench video")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clip-fps", type=int, default=30)
    ap.add_argument("--fps", type=float, default=5, help="sampling rate of the run")
    ap.add_argument("--images", type=int, default=60, help="frames saved as JPEGs for the image-path baseline")
    args = ap.parse_args(argv or [])
    clip, table = make_clip(args.minutes, args.clip_fps)
    root = Path(tempfile.mkdtemp(prefix="bench_video."))
    try:
        model, what = _model(root)
        print(f"model: {what}; CPU, {os.cpu_count()} cores, torch's default threads; --local (in-process)")
        common = ["--model", model, "--local", "--device", "cpu"]
        boxes = _frames_as_jpegs(clip, table, root / "frames", round(args.clip_fps / args.fps), args.images)
        # The engine's seconds include loading the model (and importing open_clip): one image, then all of
        # them; the difference is what the further images cost (the video's seconds exclude the load too).
        first = sorted((root / "frames").iterdir())[0]
        one = run_defr(["detect", str(first), "--boxes", str(boxes), "--out", str(root / "out_one"), *common],
                       root / "one.log")
        img = run_defr(["detect", str(root / "frames"), "--boxes", str(boxes), "--out", str(root / "out_images"),
                        *common], root / "images.log")
        seconds = [json.loads((root / o / "summary.json").read_text())["info"]["seconds"] for o in ("out_one", "out_images")]
        vid = run_defr(["detect", str(clip), "--boxes", str(table), "--fps", str(args.fps),
                        "--out", str(root / "out_video"), *common], root / "video.log")
        summary = json.loads((root / "out_video" / "summary.json").read_text())
        entry = summary["images"][0]
        image_rate = (args.images - 1) / (seconds[1] - seconds[0])
        print(f"image path (baseline): {args.images} frames as 1280x720 JPEGs (decode, score, PNG picture each): "
              f"{image_rate:.2f} images/s after the first (engine {seconds[1]:.1f} s for all, {seconds[0]:.1f} s for "
              f"one; command {img['seconds']:.1f} s, peak {img['peak_mib']:.0f} MiB)")
        print(f"video path: {entry['frames_decoded']} frames decoded ({args.minutes:g} min at {args.clip_fps} fps), "
              f"{entry['frames']} sampled at {entry['sampled_fps']:g} fps, {entry['frames_with_pairs']} with pairs, "
              f"annotated .mp4 ({entry['video_codec']}) and contact sheet")
        print(f"  {entry['frames_per_s']:.2f} sampled frames/s ({entry['frames_decoded'] / entry['seconds']:.1f} decoded "
              f"frames/s) over {entry['seconds']:.0f} s; ratio to the image path: "
              f"{entry['frames_per_s'] / image_rate:.2f}x per frame")
        print(f"  whole command {vid['seconds']:.0f} s; peak resident memory {vid['peak_mib']:.0f} MiB (the one-image "
              f"run of the image path: {one['peak_mib']:.0f} MiB)")
        # CPU seconds per frame: the command's CPU time less the one-image run's (imports, model load).
        cpu_image = (img["cpu"] - one["cpu"]) / (args.images - 1)
        cpu_frame = (vid["cpu"] - one["cpu"]) / entry["frames"]
        print(f"  CPU seconds per frame (all threads): video {cpu_frame:.3f} (decoding {entry['frames_decoded'] / entry['frames']:.0f} "
              f"frames per sampled one included), image path {cpu_image:.3f}: {cpu_image / cpu_frame:.2f}x")
        samples = vid["samples"]
        marks = [samples[min(len(samples) - 1, int(len(samples) * q))] for q in (0.1, 0.25, 0.5, 0.75, 0.99)]
        print("  resident memory while it runs (s: MiB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in marks))
        sizes = {p.name: p.stat().st_size / 2**20 for p in (root / "out_video").rglob("*") if p.is_file()}
        print("  outputs (MiB): " + ", ".join(f"{n} {s:.1f}" for n, s in sorted(sizes.items())))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])

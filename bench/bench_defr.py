"""defr: `defr detect` on one photo in-process, each phase timed, and on 200 images through Ray, against the
predict stage's inference on the same images in the same run.

    python -m bench defr          (CPU; a ViT-B/32 DEFR model at 224 px, random weights, the 600 HICO classes)

Photos: ../shared/data/photos (DEFR_SHARED_PHOTOS) and their hand-drawn boxes. The 200 images are copies
of them (640x424 to 773x576 px JPEGs), each with the boxes of its photo: once the three photos in turn
(one in three has a person, so pairs; defr runs the ViT only there, predict on every image), once
person.jpg only (2 pairs each: the ViT on every image for both). The detector phase uses RTMDet-tiny with
random weights at 320 px (speed only) when MMDetection is installed. Ray runs include actor start-up
(model load per actor), as a stage run does; Ray itself is started before, once per image set.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("DEFR_SHARED_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
N_RAY = int(os.environ.get("BENCH_DEFR_IMAGES", "200"))
ACTORS = max(1, min(2, os.cpu_count() or 1))


def _model(root: Path) -> str:
    from pipeline.classes.space import ClassSpace
    from pipeline.model import ModelConfig, build_model, save_checkpoint

    space = ClassSpace.hico()
    model = build_model(ModelConfig(model_name="ViT-B-32", image_size=224, init="random", num_classes=len(space),
                                    classes=space.to_list(), metadata={"demo_only": True}), None)
    return str(save_checkpoint(model, root / "vit_b32"))


class _Clock:
    """Times a phase: its first call (what a one-photo run pays) and, with ``repeat``, the fastest of
    ``repeat`` more calls (warm: what each further image pays; the fastest is the least disturbed by other
    jobs). Process CPU time with one torch thread: on a shared machine wall time varied 20x between runs,
    CPU time of one thread does not depend on the other jobs (I/O waits are not counted)."""

    def __init__(self, repeat: int = 3):
        self.rows, self.repeat = [], repeat

    def __call__(self, name: str, fn, *args, once: bool = False):
        start = time.process_time()
        out = fn(*args)
        first = time.process_time() - start
        warm = []
        for _ in range(0 if once else self.repeat):
            start = time.process_time()
            fn(*args)
            warm.append(time.process_time() - start)
        self.rows.append((name, first, min(warm) if warm else None))
        return out


def one_photo(model_dir: str, root: Path) -> None:
    """Phases of `defr detect` on person.jpg, run by the predictor the pool runs (PairPredictor), with
    one torch thread (process CPU time), then the whole command in-process (wall time, all threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from pipeline.inference.pictures import png_bytes
    from pipeline.inference.pair_predictor import PairPredictor

    boxes = json.loads((PHOTOS / "boxes.json").read_text())["person.jpg"]
    from pipeline.classes.coco import coco80_names

    index = {n: i for i, n in enumerate(coco80_names())}
    row = {"image_id": 0, "uri": str(PHOTOS / "person.jpg"), "name": "person",
           "boxes": [v for b in boxes for v in b["box"]], "labels": [index[b["category"]] for b in boxes],
           "scores": [b["score"] for b in boxes]}
    pairs = {"score_threshold": 0.2, "nms_threshold": 0.5, "max_humans": 15, "max_objects": 15}
    scoring = {"top_k": 100}
    from pipeline.datasets.images import read_rgb

    try:
        import mmdet.apis  # noqa: F401
        detector = {"config": "rtmdet_tiny_8xb32-300e_coco", "checkpoint": "random", "test_scale": [320, 320],
                    "seed": 33}
    except ImportError:
        detector = None
    for source, det in (("boxes file", None), ("RTMDet-tiny random weights", detector)):
        if source != "boxes file" and det is None:
            print("MMDetection not installed: detector phases skipped")
            continue
        clock = _Clock()
        predictor = clock("model load" + (" + detector build" if det else ""), PairPredictor, model_dir, pairs,
                          scoring, {"score_floor": 0.05, "max_per_image": 100}, det, {}, True, once=True)
        item = clock("decode + transform", lambda: predictor.prepare(read_rgb(row["uri"], upright=True), row))
        found = clock("boxes (detection)" if det else "boxes (from the file)", predictor.find_boxes, [item[0]], [row])
        p, scored, maps = clock("pairs + masked scoring", predictor.score, [item], [row], found)
        clock("drawing + PNG", lambda: png_bytes(predictor.draw(item[0], found[0][0], scored, len(p[0]))))
        clock("attention map (--attention)", predictor.attention_png, item[0], scored, maps[0])
        print(f"\none photo (person.jpg 640x424), boxes from the {source}: {len(p[0])} pairs, "
              f"{len(found[0][0].labels)} boxes")
        print(f"  {'phase (1 thread, CPU time)':<38} {'first call':>11} {'warm':>9}")
        for name, first, warm in clock.rows:
            print(f"  {name:<38} {first * 1e3:8.1f} ms" + (f" {warm * 1e3:6.1f} ms" if warm is not None else ""))
        warm_total = sum(w for _, _, w in clock.rows if w is not None)
        print(f"  {'per image, warm (all phases)':<38} {'':>11} {warm_total * 1e3:6.1f} ms")
    torch.set_num_threads(threads)
    import pipeline.cli.commands as cli

    start = time.perf_counter()
    assert cli.main(["detect", str(PHOTOS / "person.jpg"), "--model", model_dir, "--boxes", str(PHOTOS / "boxes.json"),
                     "--out", str(root / "one"), "--local"]) == 0
    print(f"  {'`defr detect` end to end, in-process':<38} {(time.perf_counter() - start) * 1e3:8.1f} ms "
          "(model load included, Python start excluded)")


def _copies(root: Path, sources: list[str]) -> tuple[Path, Path, Path]:
    from PIL import Image

    root.mkdir()
    folder = root / "images"
    folder.mkdir()
    boxes = json.loads((PHOTOS / "boxes.json").read_text())
    out, rows = {}, []
    for i in range(N_RAY):
        src = sources[i % len(sources)]
        name = f"img_{i:04d}.jpg"
        shutil.copy(PHOTOS / src, folder / name)
        out[name] = boxes[src]
        w, h = Image.open(PHOTOS / src).size
        rows.append({"image_id": i, "split": "test", "file_name": name, "uri": str(folder / name), "width": w,
                     "height": h})
    (root / "boxes.json").write_text(json.dumps(out))
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), root / "images.parquet")
    return folder, root / "boxes.json", root / "images.parquet"


def through_ray(model_dir: str, root: Path, sources: list[str], label: str) -> None:
    import pipeline.cli.commands as cli
    from pipeline.distributed import init_ray
    from pipeline.placement import Placement
    from pipeline.inference.predict_split import predict_split

    folder, boxes, images = _copies(root, sources)
    start = time.perf_counter()
    ray = init_ray(None, num_cpus=os.cpu_count())
    print(f"\n{N_RAY} images, {label}, through Ray ({ACTORS} CPU actor(s), batch 16; Ray started once: "
          f"{time.perf_counter() - start:.1f} s)")
    # Warm-up (untimed): Ray's worker processes import torch and open_clip once; then every run below
    # starts its own actors and loads its model, as a stage run does.
    pa_images = pa.Table.from_pylist([{"image_id": 0, "uri": str(folder / "img_0000.jpg")}])
    from pipeline.inference.image_predictor import score_images

    score_images(pa_images, model_dir, Placement(batch_size=1, actors=ACTORS, device="cpu"), ray=True)
    runs = {}
    start = time.perf_counter()
    table, _ = predict_split(str(images), model_dir, "test", Placement(batch_size=16, actors=ACTORS, device="cpu"))
    runs["predict (image-level logits)"] = time.perf_counter() - start
    assert table.num_rows == N_RAY
    common = ["--model", model_dir, "--boxes", str(boxes), "--ray", "--actors", str(ACTORS), "--batch-size", "16"]
    for name, extra, out in (("defr detect --boxes (pictures)", [], "ray"),
                             ("defr detect --boxes --no-pictures", ["--no-pictures"], "ray_no_pictures")):
        start = time.perf_counter()
        assert cli.main(["detect", str(folder), *common, *extra, "--out", str(root / out)]) == 0
        runs[name] = time.perf_counter() - start
    start = time.perf_counter()
    assert cli.main(["detect", str(folder), "--model", model_dir, "--boxes", str(boxes), "--local", "--batch-size",
                     "16", "--out", str(root / "local")]) == 0
    runs["defr detect --boxes, in-process (no Ray)"] = time.perf_counter() - start
    ray.shutdown()
    base = runs["predict (image-level logits)"]
    print(f"\n{'run':<44} {'s':>7} {'images/s':>9} {'vs predict':>11}")
    for name, t in runs.items():
        print(f"{name:<44} {t:7.1f} {N_RAY / t:9.2f} {base / t:10.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    import torch

    if not (PHOTOS / "boxes.json").exists():
        print(f"photos not found at {PHOTOS} (set DEFR_SHARED_PHOTOS): defr bench skipped")
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; model ViT-B-32 @ 224, random weights "
          "(DEMO ONLY: speed only)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = _model(root)
        one_photo(model_dir, root)
        # defr runs the ViT only on images with pairs (a person and another box); predict on every image.
        through_ray(model_dir, root / "mixed", ["dog.jpg", "horses.jpg", "person.jpg"],
                    "copies of the 3 photos (1 in 3 has a person: pairs)")
        through_ray(model_dir, root / "person", ["person.jpg"], "copies of person.jpg (2 pairs each)")


if __name__ == "__main__":
    main()

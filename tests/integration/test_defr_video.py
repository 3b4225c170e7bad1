"""`defr detect` on a video for real: a 24-frame clip written here from a real photo (shared/data/photos)
with slight motion, its boxes in a table (image, frame, category, box, score), a tiny random ViT (DEMO ONLY:
its scores mean nothing, so what is checked is what must hold whatever the scores)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import pipeline.cli.commands as cli
from pipeline.classes.space import ClassInfo, ClassSpace
from pipeline.model import ModelConfig, build_model, save_checkpoint
from tests.conftest import require_module

pytestmark = pytest.mark.integration
av = require_module("av", "PyAV decodes and encodes the videos of defr detect (pip install av)")
PERSON, DOG, HORSE = (190, 97, 276, 376), (64, 262, 206, 346), (404, 139, 603, 346)  # boxes.json, person.jpg
SPACE = ClassSpace([ClassInfo("walk dog", "walk", "dog", 16), ClassInfo("ride horse", "ride", "horse", 17),
                    ClassInfo("feed horse", "feed", "horse", 17), ClassInfo("wave", "wave", None, None)])
W, H, N, FPS = 560, 400, 24, 12


def _shift(box, k):
    """The box in frame k: the crop window moves 2 px right and 1 px down per frame."""
    x1, y1, x2, y2 = box
    return [x1 - 2 * k, y1 - k, x2 - 2 * k, y2 - k]


def _seen(box, k):
    """The box in frame k as the results give it: clipped to the frame (the horse reaches past its right edge)."""
    x1, y1, x2, y2 = _shift(box, k)
    return [max(0, x1), max(0, y1), min(W, x2), min(H, y2)]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.timeout(600)
def test_a_clip_with_a_boxes_table_gives_per_frame_results_and_an_annotated_video(shared_photos, tmp_path, capsys):
    photo = Image.open(shared_photos / "person.jpg").convert("RGB")
    with av.open(str(tmp_path / "clip.mp4"), "w") as c:   # 24 frames at 12 fps: a crop that pans slowly
        stream = c.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for k in range(N):
            for packet in stream.encode(av.VideoFrame.from_image(photo.crop((2 * k, k, 2 * k + W, k + H)))):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    # The horse's detection score alternates, so the pair's scores do too and smoothing shows.
    rows = [f'clip.mp4,{k},{cat},"{_shift(box, k)}",{score}' for k in range(N) if k != 7
            for cat, box, score in (("person", PERSON, 0.98), ("dog", DOG, 0.93), ("horse", HORSE, 0.97 - k % 2 / 2))]
    rows.append('clip.mp4,30,person,"[1, 1, 50, 90]",0.9')                    # a frame the clip does not have
    (tmp_path / "boxes.csv").write_text("image,frame,category,box,score\n" + "\n".join(rows) + "\n")
    (tmp_path / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really a webm")
    model = build_model(ModelConfig(model_name="defr-tiny-vit", init="random", num_classes=len(SPACE),
                                    classes=SPACE.to_list(), metadata={"demo_only": True}), None, seed=1)
    save_checkpoint(model, tmp_path / "model")
    out = tmp_path / "out"
    scratch = set(Path(tempfile.gettempdir()).glob(f".defr-video.*-{os.getpid()}.*"))

    code = cli.main([str(a) for a in ("detect", tmp_path / "clip.mp4", tmp_path / "broken.webm", "--model",
                                      tmp_path / "model", "--boxes", tmp_path / "boxes.csv", "--out", out)])
    printed, errors = capsys.readouterr()
    assert code == 0, errors
    assert "clip.mp4: 24 frame(s) at 12 fps (of 24); 23 with pairs" in printed
    assert "1 of 24 sampled frames have no rows in the boxes file (frames: 7)" in printed
    assert "rows of 1 frame(s) the clip does not have (frames: 30; 24 decoded)" in printed
    broken = [line for line in printed.splitlines() if line.startswith("broken.webm")]
    assert len(broken) == 1 and "broken.webm: not used: cannot be read as a video" in broken[0]

    # Per-frame rows: every frame with boxes has its two pairs (person-dog, person-horse), moved with the crop.
    hois = [h for h in _jsonl(out / "hoi_detections.jsonl") if h["image"] == "clip"]
    assert sorted({h["frame"] for h in hois}) == [k for k in range(N) if k != 7]
    for h in hois:
        k = h["frame"]
        assert h["time_s"] == pytest.approx(k / FPS, abs=1e-3) and h["uri"] == str(tmp_path / "clip.mp4")
        pair = (h["human_box"], h["object_box"])
        assert pair in ((_seen(PERSON, k), _seen(DOG, k)), (_seen(PERSON, k), _seen(HORSE, k)))
        assert h["object"] == ("dog" if pair[1] == _seen(DOG, k) else "horse") and h["name"] != "wave"
    table = pq.read_table(out / "hoi_detections.parquet").to_pylist()
    assert len(table) == len(hois) and {r["frame"] for r in table} == {h["frame"] for h in hois}
    # Linked: one track per pair across all frames (frame 7's gap is within max_gap); smoothed = the EMA.
    tracks = {h["object"]: set() for h in hois}
    for h in hois:
        tracks[h["object"]].add(h["track"])
    assert [len(t) for t in tracks.values()] == [1, 1] and tracks["dog"] != tracks["horse"]
    ride = sorted((h for h in hois if h["name"] == "ride horse"), key=lambda h: h["frame"])
    ema = ride[0]["score"]
    for h in ride[1:]:
        ema = 0.5 * h["score"] + 0.5 * ema
        assert h["smoothed"] == pytest.approx(ema, rel=1e-4)
    assert max(abs(h["smoothed"] - h["score"]) / h["score"] for h in ride) > 0.2   # the alternation is smoothed
    frames = _jsonl(out / "frames.jsonl")
    assert [f["frame"] for f in frames] == list(range(N))
    assert frames[7] == {"image": "clip", "frame": 7, "time_s": pytest.approx(7 / FPS, abs=1e-3), "boxes": 0,
                         "persons": 0, "pairs": 0, "note": "no boxes for this frame in the boxes file"}
    dets = [d for d in _jsonl(out / "detections.jsonl") if d["image"] == "clip"]
    assert len(dets) == 3 * 23 and {d["category"] for d in dets} == {"person", "dog", "horse"}
    summary = json.loads((out / "summary.json").read_text())
    clip = next(i for i in summary["images"] if i["image"] == "clip")
    assert (clip["frames"], clip["frames_with_pairs"], clip["frames_without_boxes"], clip["pairs"]) == (24, 23, 1, 46)
    assert {"image": "clip.mp4 frame 30", "source": str(tmp_path / "boxes.csv"),
            "reason": "no such frame: 24 frame(s) were decoded (0 to 23)"} in summary["rejects"]

    # The annotated video: every sampled frame, H.264 at 12 fps, the pairs drawn on the moving photo.
    with av.open(str(out / "videos" / "clip.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and float(c.streams.video[0].average_rate) == FPS
    drawn = _frames(out / "videos" / "clip.mp4")
    raw = _frames(tmp_path / "clip.mp4")
    assert len(drawn) == N and drawn[0].shape == (H, W, 3)
    for k in (0, 12, 23):
        changed = np.abs(drawn[k].astype(int) - raw[k].astype(int)).sum(axis=2) > 60
        x1, y1, x2, y2 = (round(v) for v in _shift(PERSON, k))
        assert changed[y1 + 60:y2 - 60, x1].mean() > 0.8                 # the person's box, where it is now
        assert changed[y1 + 60:y2 - 60, x1 + 20:x2 - 20].mean() < 0.2      # inside it: the photo
    assert Image.open(out / "videos" / "clip.png").width > 4 * 240          # the contact sheet
    assert set(Path(tempfile.gettempdir()).glob(f".defr-video.*-{os.getpid()}.*")) == scratch   # no leftovers

"""HOI detection on a video clip: its sampled frames streamed through the inference engine in chunks,
pairs linked and smoothed across frames, an annotated .mp4 written as the frames come, a contact sheet.

Each sampled frame is one image of the engine (:meth:`pipeline.inference.engine.PoolWorker.run_decoded`
running :class:`pipeline.inference.pair_predictor.PairPredictor`, as ``defr detect`` does for photos): its
boxes come from the boxes table (``frame`` column) or from the detector in the same worker, then pairs,
masked regional scoring and the model's classes. Only a chunk of frames is held at a time; results are
kept as compact Arrow tables. A frame the boxes table has no rows for has no boxes: it is written to the
video as it is, with a note, and counted (never run through the model).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from pipeline.classes.coco import coco80_names
from pipeline.detection.boxes import ImageDetections
from pipeline.inference.detector_predictor import DetectorSpec
from pipeline.inference.engine import PoolWorker, local_device
from pipeline.inference.pair_predictor import PairPredictor, why_no_pairs
from pipeline.inference.pictures import PALETTE, DrawnPair, PictureOptions, contact_sheet, draw_pairs
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams

from pipeline.video.frames import ClipReader, Frame, sample_rate
from pipeline.video.mp4 import Mp4Writer
from pipeline.video.tracks import FramePair, Linking, PairTracker

BOX = pa.list_(pa.float32(), 4)
# One row per (pair, class) of each sampled frame: the engine's score and the track's smoothed score.
CLIP_HOIS = pa.schema([("frame", pa.int32()), ("time_s", pa.float64()), ("track", pa.int32()), ("human_box", BOX),
                       ("object_box", BOX), ("hoi", pa.int32()), ("score", pa.float32()), ("smoothed", pa.float32())])
# The boxes each frame was scored with (after clipping, the score floor and the cap).
CLIP_DETECTIONS = pa.schema([("frame", pa.int32()), ("time_s", pa.float64()), ("box", BOX), ("label", pa.int16()),
                             ("score", pa.float32())])
SHEET_FRAMES = 12     # frames on a clip's contact sheet, evenly spread
NO_BOXES = "no boxes for this frame in the boxes file"


@dataclass
class ClipResult:
    """What :func:`detect_clip` returns.

    Attributes:
        info: the clip (width, height, fps, codec, frames_in_clip as the container says), the run
            (sampled_fps, frames_decoded, frames: sampled, frames_with_pairs, frames_without_boxes,
            box_frames_not_sampled, video_codec, seconds, frames_per_s) and ``problem`` (why decoding
            stopped early, or "").
        frames: one dict per sampled frame: frame, time_s, boxes, persons, pairs, note.
        hois: :data:`CLIP_HOIS` rows, frame by frame; within a frame pair by pair (the best pair first),
            each pair's classes best first.
        detections: :data:`CLIP_DETECTIONS` rows.
        rejects: {image, source, reason} of each box that could not be used and each boxes-table frame
            the clip does not have.
        video: the annotated .mp4 (``video`` argument), None without one.
        sheet: the contact sheet (annotated frames, evenly spread), None without pictures.
    """
    info: dict
    frames: list[dict]
    hois: pa.Table
    detections: pa.Table
    rejects: list[dict]
    video: Path | None
    sheet: Image.Image | None


def pair_worker(checkpoint: str, pairs: PairParams = PairParams(), scoring: ScoreParams = ScoreParams(), *,
                box_filter: dict | None = None, detector: DetectorSpec | None = None, device: str = "auto",
                threads: float | None = None, precision: str = "auto") -> PoolWorker:
    """The engine's worker with a :class:`PairPredictor` for clips: the model loaded once, to run any
    number of clips (pictures are drawn by :func:`detect_clip`, after smoothing, not by the predictor).

    Args:
        checkpoint: DEFR checkpoint folder or URI.
        pairs, scoring: pair rule and masked scoring (defaults: the score_regions stage's).
        box_filter: ``score_floor`` and ``max_per_image`` of the boxes (None: no filter).
        detector: an MMDetection detector to find the boxes in each frame (None: boxes given per frame).
        device: ``auto`` (a GPU when torch sees one), ``cuda`` or ``cpu``.
        threads: torch threads (None: torch's default).
        precision: the classifier's autocast (:mod:`pipeline.precision`: auto = bf16 on a GPU, fp32 on CPU).
    """
    kwargs = {"checkpoint": checkpoint, "pairs": dataclasses.asdict(pairs), "scoring": dataclasses.asdict(scoring),
              "boxes": box_filter, "detector": dataclasses.asdict(detector) if detector else None,
              "picture": None, "attention": False, "precision": precision}
    return PoolWorker(PairPredictor, kwargs, local_device(device), threads)


def detect_clip(uri: str, worker: PoolWorker, *, boxes: dict[int, ImageDetections] | None = None,
                fps: float | None = None, video: str | Path | None = None,
                picture: PictureOptions | None = PictureOptions(), linking: Linking = Linking(), chunk: int = 8,
                name: str | None = None, progress: bool = True) -> ClipResult:
    """HOI detection on every sampled frame of the clip ``uri`` (module docstring).

    Args:
        uri: the video file (mp4, mov, webm, mkv...: whatever FFmpeg decodes), a path or an fsspec URI.
        worker: :func:`pair_worker`'s worker (its predictor is a :class:`PairPredictor`).
        boxes: frame index (0-based, among the decoded frames) -> the frame's boxes (COCO-80 labels); None:
            the worker's detector finds them.
        fps: sampling rate (:func:`pipeline.video.frames.sample_rate`; None: the clip's own, at most 30).
        video: where to write the annotated .mp4 (at the sampled rate); None: no video.
        picture: what the video and the contact sheet draw; None: neither is made.
        linking: how pairs are linked across frames and their scores smoothed (:mod:`pipeline.video.tracks`).
        chunk: frames run through the engine at a time (memory: one chunk of decoded frames).
        name: the clip's name in notes and reject rows (default: its file name).
        progress: show a progress bar in frames.

    Raises:
        VideoError: the file cannot be read as a video (names it).
        ValueError: no boxes and no detector in the worker, or a bad ``fps``.
    """
    predictor = worker.predictor
    if boxes is None and predictor.detector is None:
        raise ValueError(f"{uri}: no boxes for the frames and no detector in the worker")
    name = name or PurePosixPath(uri.split("://", 1)[-1]).name
    start = time.perf_counter()
    with ClipReader(uri) as reader, contextlib.ExitStack() as stack:
        rate = sample_rate(reader.info.fps, fps)
        writer = stack.enter_context(Mp4Writer(video, rate)) if video is not None and picture is not None else None
        run = _Run(uri, name, worker, boxes, picture, PairTracker(linking), writer)
        bar = stack.enter_context(tqdm(total=reader.expected(rate), desc=name, unit="frame", mininterval=1.0,
                                       disable=not progress))
        batch: list[Frame] = []
        for frame in reader.frames(rate):
            batch.append(frame)
            if len(batch) == chunk:
                run.process(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            run.process(batch)
            bar.update(len(batch))
        clip, decoded, problem = reader.info, reader.decoded, reader.problem
    seconds = time.perf_counter() - start
    frames = run.frames
    sampled = {f["frame"] for f in frames}
    unused = sorted(set(boxes or ()) - sampled)
    beyond = [f for f in unused if f >= decoded]
    run.rejects += [{"image": f"{name} frame {f}", "source": "boxes",
                     "reason": f"no such frame: {decoded} frame(s) were decoded (0 to {decoded - 1})"} for f in beyond]
    info = {"width": clip.width, "height": clip.height, "fps": clip.fps, "codec": clip.codec,
            "frames_in_clip": clip.frames, "frames_decoded": decoded, "sampled_fps": round(rate, 4),
            "frames": len(frames), "frames_with_pairs": sum(1 for f in frames if f["pairs"]),
            "frames_without_boxes": sum(1 for f in frames if f["note"] == NO_BOXES),
            "box_frames_not_sampled": len(unused) - len(beyond),
            "video_codec": writer.codec if writer else None, "seconds": round(seconds, 3),
            "frames_per_s": round(len(frames) / seconds, 2) if seconds else None, "problem": problem}
    hois = pa.concat_tables(run.hois) if run.hois else CLIP_HOIS.empty_table()
    detections = pa.concat_tables(run.detections) if run.detections else CLIP_DETECTIONS.empty_table()
    return ClipResult(info, frames, hois, detections, run.rejects, Path(video) if writer else None, run.sheet())


class _Run:
    """The state of one clip's run: linking, the rows so far, the video writer and the sheet's frames."""

    def __init__(self, uri, name, worker, boxes, picture, tracker, writer):
        self.uri, self.name, self.worker, self.boxes = uri, name, worker, boxes
        self.picture, self.tracker, self.writer = picture, tracker, writer
        self.predictor: PairPredictor = worker.predictor
        self.frames: list[dict] = []
        self.hois: list[pa.Table] = []
        self.detections: list[pa.Table] = []
        self.rejects: list[dict] = []
        self.thumbs: list[tuple[Image.Image, str, list]] = []
        self.stride = 1

    def process(self, frames: list[Frame]) -> None:
        """Runs the engine on the frames that have boxes (all, with a detector), then links, draws and
        writes every frame in order."""
        run = [f for f in frames if self.boxes is None or f.index in self.boxes]
        rows = []
        for f in run:
            row = {"image_id": f.index, "uri": self.uri, "name": f"{self.name} frame {f.index}"}
            if self.boxes is not None:
                det = self.boxes[f.index]
                row |= {"boxes": np.asarray(det.boxes, np.float32).reshape(-1).tolist(),
                        "labels": np.asarray(det.labels).tolist(), "scores": np.asarray(det.scores).tolist()}
            rows.append(row)
        out = self.worker.run_decoded([f.image for f in run], rows).to_pylist() if run else []
        results = {r["image_id"]: r for r in out}
        hois = {k: [] for k in CLIP_HOIS.names}
        dets = {k: [] for k in CLIP_DETECTIONS.names}
        for f in frames:
            self.frame(f, results.get(f.index), hois, dets)
        self.hois.append(pa.table(hois, schema=CLIP_HOIS))
        self.detections.append(pa.table(dets, schema=CLIP_DETECTIONS))

    def frame(self, f: Frame, r: dict | None, hois: dict, dets: dict) -> None:
        step = len(self.frames)
        classes = self.predictor.classes
        if r is None:
            det = ImageDetections(f.index, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                                  np.zeros(0, np.float32))
            n_pairs, note, keys, rows = 0, NO_BOXES, [], {}
        else:
            det = ImageDetections(f.index, np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                                  np.asarray(r["labels"], np.int64), np.asarray(r["scores"], np.float32))
            self.rejects += [{"image": item, "source": self.uri, "reason": reason}
                             for item, reason in zip(r["box_reject_items"], r["box_rejects"])]
            n_pairs, note = r["pairs"], why_no_pairs(det, r["pairs"], self.predictor.pair_params)
            hb = np.asarray(r["human_box"], np.float32).reshape(-1, 4)
            ob = np.asarray(r["object_box"], np.float32).reshape(-1, 4)
            rows: dict[tuple, list[tuple[int, float]]] = {}   # pair -> its (class, score) rows, best first
            for k, (hoi, score) in enumerate(zip(r["hoi"], r["score"])):
                rows.setdefault((tuple(hb[k].tolist()), tuple(ob[k].tolist())), []).append((hoi, score))
            keys = list(rows)
        coco = classes.coco80
        pairs = [FramePair(np.asarray(h), np.asarray(o), int(coco[rows[(h, o)][0][0]]), dict(rows[(h, o)]))
                 for h, o in keys]
        tracks = self.tracker.update(step, pairs)
        for (h, o), track in zip(keys, tracks):
            for hoi, score in rows[(h, o)]:
                for col, value in (("frame", f.index), ("time_s", f.time_s), ("track", track.id), ("human_box", h),
                                   ("object_box", o), ("hoi", hoi), ("score", score), ("smoothed", track.scores[hoi])):
                    hois[col].append(value)
        for box, label, score in zip(det.boxes.tolist(), det.labels.tolist(), det.scores.tolist()):
            for col, value in (("frame", f.index), ("time_s", f.time_s), ("box", box), ("label", label), ("score", score)):
                dets[col].append(value)
        self.frames.append({"frame": f.index, "time_s": f.time_s, "boxes": len(det.labels),
                            "persons": int((det.labels == 0).sum()), "pairs": int(n_pairs), "note": note})
        if self.picture is None or (self.writer is None and step % self.stride):
            return   # nothing to draw: no video, and no thumbnail due for the sheet
        drawn = sorted(zip(keys, tracks), key=lambda kt: -kt[1].best())[:self.picture.pairs]
        pictured = [DrawnPair(list(h), list(o), sorted(((classes[c].name, s) for c, s in t.scores.items()),
                                                       key=lambda cs: -cs[1]), PALETTE[t.id % len(PALETTE)], f"#{t.id}")
                    for (h, o), t in drawn]
        in_pairs = {b for k, _ in drawn for b in k}
        names = coco80_names()
        others = [(b.tolist(), f"{names[l].replace('_', ' ')} {s:.2f}") for b, l, s in
                  zip(det.boxes, det.labels, det.scores) if tuple(b.tolist()) not in in_pairs]
        image = draw_pairs(f.image, pictured, others, note, self.picture)
        if self.writer is not None:
            self.writer.write(image)
        self.keep_thumbnail(step, image, f, pictured)

    def keep_thumbnail(self, step: int, image: Image.Image, f: Frame, pictured: list[DrawnPair]) -> None:
        """Keeps every ``stride``-th annotated frame, small; past 2 x SHEET_FRAMES, every other one and
        twice the stride: at most that many, evenly spread, however long the clip."""
        if step % self.stride:
            return
        thumb = image.copy()
        thumb.thumbnail((240, 240))
        lines = pictured[0].lines[:2] if pictured else []
        self.thumbs.append((thumb, f"frame {f.index}, {f.time_s:.1f} s", lines))
        if len(self.thumbs) > 2 * SHEET_FRAMES:
            self.thumbs, self.stride = self.thumbs[::2], self.stride * 2

    def sheet(self) -> Image.Image | None:
        if self.picture is None or not self.thumbs:
            return None
        pick = np.unique(np.linspace(0, len(self.thumbs) - 1, min(SHEET_FRAMES, len(self.thumbs))).round().astype(int))
        return contact_sheet([self.thumbs[i] for i in pick], note=" | ".join(
            t for t in (f"{self.name}: annotated frames, labels smoothed across frames", self.picture.note) if t))

"""``defr detect``: HOI detection on any images, with boxes from a detector or a boxes file, named by the
model's own classes, written as tables and pictures.

Every human-object pair of an image is scored by masked regional scoring
(:mod:`pipeline.inference.pair_predictor`) in the same actor that decodes the image and, with a detector,
detects its boxes. Results name each class by the checkpoint's label space (``ModelConfig.classes``),
so reading them needs no dataset vocabulary. Nothing is dropped silently: unreadable images, arguments
that match nothing, images missing from the boxes file and unusable boxes are listed with the reason,
and an image without pairs says why (no box, no person, nothing else to pair with).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.detection.boxes import ImageDetections, box_item
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams
from pipeline.storage.credentials import mask

from pipeline.inference.detector_predictor import DetectorSpec
from pipeline.placement import Placement
from pipeline.inference.engine import shippable
from pipeline.cli.inputs import VIDEO_SUFFIXES, ImageInputs
from pipeline.inference.pictures import PictureOptions
from pipeline.inference.pair_predictor import box_counts, score_rows, why_no_pairs
from pipeline.cli.result_folder import staged

log = logging.getLogger(__name__)
DEMO_NOTE = ("DEMO ONLY model (its checkpoint says so: the tiny model of the synthetic demo, or random weights): "
             "its scores mean nothing on real images")
RANDOM_DETECTOR_NOTE = "random detector weights (TESTS / DEMO ONLY): its boxes mean nothing"


@dataclass
class HOIOptions:
    """What ``defr detect`` computes and draws (defaults: the score_regions stage's params)."""
    pairs: PairParams = field(default_factory=PairParams)
    scoring: ScoreParams = field(default_factory=lambda: ScoreParams(top_k=100))
    score_floor: float = 0.05          # boxes under it are filtered before pairing
    max_per_image: int = 100           # boxes kept per image
    picture: PictureOptions | None = field(default_factory=PictureOptions)
    attention: bool = False            # the CLS attention map of each image's top pair (not of video frames)
    fps: float | None = None           # video sampling rate (None: the clip's own, at most 30: pipeline.video.frames)


@dataclass
class HOIResult:
    """Everything ``defr detect`` reports (see :func:`write_hoi_results`)."""
    hois: list[dict]                 # one per (pair, class): image, hoi, name, verb, object, score, boxes
    detections: list[dict]           # the boxes used: image, box, category, score
    images: list[dict]               # one per input image: status, boxes, persons, pairs, note
    rejects: list[dict]              # what could not be used, with the reason
    pictures: dict[str, bytes]
    attention: dict[str, bytes]
    notes: list[str]
    info: dict
    clips: dict = field(default_factory=dict)   # video name -> pipeline.video.clips.ClipResult
    scratch: Path | None = None                  # the folder of the clips' .mp4 files until they are written


def model_notes(config, detector: DetectorSpec | None) -> list[str]:
    notes = [DEMO_NOTE] if config.metadata.get("demo_only") else []
    return notes + ([RANDOM_DETECTOR_NOTE] if detector is not None and detector.checkpoint == "random" else [])


def _checked_scores(d: ImageDetections, path: str, item: str, rejects: list, kind: str = "image") -> ImageDetections:
    """``d`` without its boxes whose score is not a number (reject rows naming ``item``).

    Raises:
        ValueError: a score outside [0, 1] (the file is then suspect).
    """
    s = np.asarray(d.scores, np.float64)
    finite = np.isfinite(s)
    if not (s[finite] >= 0).all() or not (s[finite] <= 1).all():
        raise ValueError(f"boxes {path}: {kind} {item} has scores {s.tolist()[:5]}; expected [0, 1]")
    if finite.all():
        return d
    # One unusable box, not a suspect file: the image keeps its other boxes.
    rejects += [(path, box_item(item, d.boxes[j]), f"score {s[j]} is not a number in [0, 1]")
                for j in np.flatnonzero(~finite)]
    return ImageDetections(d.image_id, np.asarray(d.boxes)[finite], np.asarray(d.labels)[finite], s[finite])


def read_boxes(images: pa.Table, path: str, fmt: str, label_space: str, videos: pa.Table | None = None
               ) -> tuple[list[ImageDetections], dict[int, dict[int, ImageDetections]], list[tuple[str, str, str]]]:
    """The boxes of ``images`` (image_id, file_name) and of the frames of ``videos`` (same columns) in a
    boxes file: (detections per image found, video id -> frame -> detections, reject rows (source, item,
    reason)). The frames of videos come from a table with a ``frame`` column
    (:func:`pipeline.detection.precomputed.read_boxes_table`).

    Raises:
        ValueError: a score outside [0, 1], a label outside the label space, videos with boxes that are not
            a table.
    """
    from pipeline.detection.precomputed import read_boxes_table, read_precomputed, sniff_format

    fmt = fmt if fmt != "auto" else sniff_format(path)
    has_videos = videos is not None and videos.num_rows > 0
    if has_videos and fmt != "table":
        raise ValueError(f"boxes {path}: the frames of a video ({videos['file_name'][0].as_py()}) take their boxes "
                         "from a .csv / .parquet table with columns image, frame, category, box, score")
    if fmt == "table":
        dets, frames, rejects, _ = read_boxes_table(path, images, label_space, videos if has_videos else None)
    else:
        (dets, rejects, _), frames = read_precomputed(fmt, path, images, label_space), {}
    files = dict(zip(images["image_id"].to_pylist(), images["file_name"].to_pylist()))
    dets = [_checked_scores(d, path, files[d.image_id], rejects) for d in dets]
    if has_videos:
        names = dict(zip(videos["image_id"].to_pylist(), videos["file_name"].to_pylist()))
        frames = {v: {f: _checked_scores(d, path, f"{names[v]} frame {f}", rejects, "video") for f, d in by_frame.items()}
                  for v, by_frame in frames.items()}
    return dets, frames, rejects


def _rows_with_boxes(table: pa.Table, dets: list[ImageDetections], rejects: list[tuple[str, str, str]]
                     ) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """The rows of ``table`` (images) that have an entry in the boxes file, with their boxes; an image
    without one that does not exist at all is a "missing image file" reject instead of "no entry"."""
    by_id = {d.image_id: d for d in dets}
    files = dict(zip(table["image_id"].to_pylist(), table["file_name"].to_pylist()))
    gone = {files[i]: u for i, u in zip(table["image_id"].to_pylist(), table["uri"].to_pylist())
            if i not in by_id and not storage.exists(u)}
    rejects = [r for r in rejects if r[1] not in gone] + [(u, u, "missing image file") for u in gone.values()]
    keep = [i for i in table["image_id"].to_pylist() if i in by_id]
    position = {i: k for k, i in enumerate(table["image_id"].to_pylist())}
    rows = table.take(pa.array([position[i] for i in keep], pa.int64())) if keep else table.slice(0, 0)
    rows = (rows.append_column("boxes", pa.array([np.asarray(by_id[i].boxes, np.float32).reshape(-1) for i in keep],
                                                 pa.list_(pa.float32())))
                .append_column("labels", pa.array([np.asarray(by_id[i].labels) for i in keep], pa.list_(pa.int16())))
                .append_column("scores", pa.array([np.asarray(by_id[i].scores, np.float32) for i in keep],
                                                  pa.list_(pa.float32()))))
    return rows, rejects


def boxes_rows(inputs: ImageInputs, path: str, fmt: str, label_space: str) -> tuple[pa.Table, list[dict]]:
    """Rows of the images found in a boxes file (with raw boxes, labels, scores), and rejects of the others.

    Raises:
        ValueError: a score outside [0, 1] or a label outside the label space (the file is then suspect).
    """
    dets, _, rejects = read_boxes(inputs.table.select(["image_id", "file_name"]), path, fmt, label_space)
    rows, rejects = _rows_with_boxes(inputs.table, dets, rejects)
    return rows, [{"image": item, "source": source, "reason": reason} for source, item, reason in rejects]


def detect_hois(inputs: ImageInputs, checkpoint: str, options: HOIOptions, placement: Placement, *, ray: bool,
                detector: DetectorSpec | None = None, boxes: str | None = None, boxes_format: str = "auto",
                label_space: str = "coco80") -> HOIResult:
    """HOI detection on ``inputs`` with boxes from ``detector`` or from the ``boxes`` file (one of them).

    Raises:
        ValueError: neither or both box sources, a model whose classes involve no object, a bad boxes file.
    """
    from pipeline.classes.space import model_classes
    from pipeline.classes.coco import coco80_names

    from pipeline.model import read_model_config

    if (detector is None) == (boxes is None):
        raise ValueError("give boxes from a detector (--detector) or from a file (--boxes), not "
                         f"{'both' if detector else 'neither'}")
    config = read_model_config(checkpoint)
    classes = model_classes(config)
    if not classes.has_objects:
        raise ValueError(f"{checkpoint}: the model's {len(classes)} classes involve no COCO object (e.g. "
                         f"{classes.names[:3]}), so no box pair can score them: use `defr classify`")
    rejects = [{"image": arg, "reason": why} for arg, why in inputs.problems]
    video = pc.match_substring_regex(pc.utf8_lower(inputs.table["file_name"]),
                                     "(" + "|".join(re.escape(s) for s in VIDEO_SUFFIXES) + ")$")
    videos, stills = inputs.table.filter(video), inputs.table.filter(pc.invert(video))
    frame_boxes = None
    if boxes is not None:
        dets, frame_boxes, file_rejects = read_boxes(stills.select(["image_id", "file_name"]), boxes, boxes_format,
                                                     label_space, videos.select(["image_id", "file_name"]))
        rows, file_rejects = _rows_with_boxes(stills, dets, file_rejects)
        rejects += [{"image": item, "source": source, "reason": reason} for source, item, reason in file_rejects]
    else:
        rows = stills
    notes = model_notes(config, detector)
    picture = options.picture and dataclasses.replace(options.picture, note=" | ".join([options.picture.note, *notes]).strip(" |"))
    run = score_rows(rows, shippable(checkpoint), options.pairs, options.scoring, placement, ray=ray,
                     boxes={"score_floor": options.score_floor, "max_per_image": options.max_per_image},
                     detector=detector, picture=picture, attention=options.attention, upright=True)
    names = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["name"].to_pylist()))
    uris = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["uri"].to_pylist()))
    files = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["file_name"].to_pylist()))
    rejects += [{"image": uris[int(i)], "reason": reason} for _, i, reason in run.rejects]
    rejects += [{"image": item, "source": source, "reason": reason}
                for source, item, reason in box_counts(run.table, boxes or (detector.source if detector else "")).rejects]
    coco = [n.replace("_", " ") for n in coco80_names()]
    hois, detections, images, pictures, attention = [], [], [], {}, {}
    done = {}
    for r in run.table.to_pylist():
        name, uri = names[r["image_id"]], uris[r["image_id"]]
        det = ImageDetections(r["image_id"], np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                              np.asarray(r["labels"], np.int64), np.asarray(r["scores"], np.float32))
        for box, label, score in zip(det.boxes.tolist(), det.labels.tolist(), det.scores.tolist()):
            detections.append({"image": name, "box": _round(box), "category": coco[label], "label": label,
                               "score": round(score, 4)})
        hb, ob = np.asarray(r["human_box"]).reshape(-1, 4), np.asarray(r["object_box"]).reshape(-1, 4)
        for k, (hoi, score) in enumerate(zip(r["hoi"], r["score"])):
            c = classes[hoi]
            hois.append({"image": name, "uri": uri, "human_box": _round(hb[k]), "object_box": _round(ob[k]),
                         "hoi": hoi, "name": c.name, "verb": c.verb, "object": c.object, "score": float(score)})
        note = why_no_pairs(det, r["pairs"], options.pairs)
        done[r["image_id"]] = {"image": name, "file_name": files[r["image_id"]], "uri": uri,
                               "status": "pairs" if r["pairs"] else "no pairs",
                               "boxes": len(det.labels), "persons": int((det.labels == 0).sum()),
                               "pairs": r["pairs"], "note": note}
        if r["picture"] is not None:
            pictures[name] = r["picture"]
        if r["attention"] is not None:
            attention[name] = r["attention"]
    clips, scratch = {}, None
    if videos.num_rows:
        clips, scratch, clip_rejects = _run_videos(videos, checkpoint, options, placement, detector, frame_boxes,
                                                   picture, boxes or "")
        rejects += clip_rejects
        done |= {i: clip_entry(c, names[i], files[i], uris[i]) for i, c in clips.items()}
        clips = {names[i]: _clip_tables(c, classes, names[i], uris[i]) for i, c in clips.items()}
    reasons = {}
    for rej in rejects:
        reasons.setdefault(rej["image"], rej["reason"])
    for i in inputs.table["image_id"].to_pylist():
        images.append(done.get(i) or {"image": names[i], "file_name": files[i], "uri": uris[i], "status": "rejected",
                                      "note": reasons.get(uris[i]) or reasons.get(names[i]) or
                                      reasons.get(files[i], "not processed")})
    info = {**run.info, "model": config.model_name, "classes": len(classes), "checkpoint": str(checkpoint),
            "boxes_from": boxes or (detector.source if detector else "")}
    if clips:
        info["videos"] = "in this process, frames streamed through one model (pipeline.video.clips.detect_clip)"
        info["seconds"] = round(info["seconds"] + sum(c.info["seconds"] for c in clips.values()), 3)
        info["mode"] = "in-process" if info["mode"] == "none" else info["mode"]
    return HOIResult(hois, detections, images, rejects, pictures, attention, notes, info, clips, scratch)


def _run_videos(videos: pa.Table, checkpoint: str, options: HOIOptions, placement: Placement,
                detector: DetectorSpec | None, frame_boxes: dict | None, picture: PictureOptions | None, source: str
                ) -> tuple[dict, Path, list[dict]]:
    """Runs each video in this process (one model for all of them): image_id -> :class:`ClipResult` of the
    videos that could be read, the scratch folder holding their .mp4 files, and reject rows (unreadable
    videos, videos without rows in the boxes file, unusable boxes, boxes of frames the clip does not have)."""
    from pipeline.video.clips import detect_clip, pair_worker
    from pipeline.video.frames import ClipReader, VideoError

    todo, rejects = [], []
    for v in videos.to_pylist():
        if frame_boxes is not None and not frame_boxes.get(v["image_id"]):
            try:   # a file that is no video says so first (as a missing image does)
                ClipReader(v["uri"]).close()
            except VideoError as e:
                rejects.append({"image": v["uri"], "reason": str(e).removeprefix(f"{v['uri']}: ")})
                continue
            rejects.append({"image": v["file_name"], "source": source, "reason": "no rows for this video in the boxes file"})
        else:
            todo.append(v)
    if not todo:
        return {}, None, rejects
    worker = pair_worker(shippable(checkpoint), options.pairs, options.scoring, detector=detector, device=placement.device,
                         box_filter={"score_floor": options.score_floor, "max_per_image": options.max_per_image},
                         precision=placement.precision)
    scratch = storage.scratch_dir("defr-video")   # the .mp4 files, written as the frames come
    clips = {}
    try:
        for v in todo:
            try:
                clips[v["image_id"]] = detect_clip(
                    v["uri"], worker, boxes=None if frame_boxes is None else frame_boxes[v["image_id"]],
                    fps=options.fps, video=scratch / f"{v['name']}.mp4", picture=picture, chunk=placement.batch_size,
                    name=v["file_name"])
            except VideoError as e:
                rejects.append({"image": v["uri"], "reason": str(e).removeprefix(f"{v['uri']}: ")})
                continue
            rejects += [{**r, "source": source if r["source"] == "boxes" else r["source"]}
                        for r in clips[v["image_id"]].rejects]
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return clips, scratch, rejects


def clip_entry(clip, name: str, file_name: str, uri: str) -> dict:
    """A video's line of ``summary.json``'s images: counts of its frames and a note on what is missing."""
    from pipeline.video.clips import NO_BOXES

    info, frames = clip.info, clip.frames
    empty = [f["frame"] for f in frames if f["note"] == NO_BOXES]
    missing = [int(r["image"].rsplit(" ", 1)[-1]) for r in clip.rejects if r["reason"].startswith("no such frame")]
    notes = [f"{len(empty)} of {len(frames)} sampled frames have no rows in the boxes file (frames: "
             f"{_ranges(empty)}): no boxes there" if empty else "",
             f"the boxes file has rows of {len(missing)} frame(s) the clip does not have (frames: {_ranges(missing)}; "
             f"{info['frames_decoded']} decoded)" if missing else "",
             f"boxes of {info['box_frames_not_sampled']} frame(s) not sampled at {info['sampled_fps']:g} fps (--fps)"
             if info["box_frames_not_sampled"] else "", info["problem"]]
    return {"image": name, "file_name": file_name, "uri": uri, "video": True,
            "status": "pairs" if info["frames_with_pairs"] else "no pairs",
            "boxes": sum(f["boxes"] for f in frames), "persons": sum(f["persons"] for f in frames),
            "pairs": sum(f["pairs"] for f in frames),
            **{k: info[k] for k in ("frames", "frames_with_pairs", "frames_without_boxes", "frames_decoded",
                                    "sampled_fps", "fps", "width", "height", "codec", "video_codec", "seconds",
                                    "frames_per_s")},
            "note": "; ".join(n for n in notes if n) or (frames and not info["frames_with_pairs"]
                                                         and f"no pairs in any frame: {frames[0]['note']}") or ""}


def _ranges(numbers: list[int], shown: int = 10) -> str:
    """``0-3, 7, 9-12`` (the first ``shown`` runs, then how many more)."""
    runs = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:shown])
    return text + (f" and {len(runs) - shown} more runs" if len(runs) > shown else "")


def clip_line(entry: dict) -> str:
    """The console line of a video (``defr detect``)."""
    line = (f"{entry['frames']} frame(s) at {entry['sampled_fps']:g} fps (of {entry['frames_decoded']}); "
            f"{entry['frames_with_pairs']} with pairs")
    return line + (f"; {entry['note']}" if entry["note"] else "")


def _round(box) -> list[float]:
    return [round(float(v), 2) for v in np.asarray(box).reshape(-1)]


def write_hoi_results(result: HOIResult, out_dir: str | Path, overwrite: bool = False) -> dict[str, str]:
    """Writes the result into ``out_dir`` all at once (:func:`~pipeline.cli.result_folder.staged`:
    a temporary folder beside it, renamed into place at the end). Returns what was written.

    Files: ``hoi_detections.jsonl`` and ``.parquet`` (image, uri, human_box, object_box, hoi, name, verb,
    object, score; for the frames of a video also frame, time_s, track and smoothed: :data:`VIDEO_COLUMNS`),
    ``detections.jsonl`` (the boxes used), ``summary.json`` (notes, per-image status, rejects, run info),
    ``pictures/<image>.png`` and ``attention/<image>.png``; for videos ``frames.jsonl`` (one line per
    sampled frame), ``videos/<video>.mp4`` (annotated) and ``videos/<video>.png`` (contact sheet).

    ``overwrite`` (``--overwrite``) lets the result replace an earlier one; without it a result that another
    run put into ``out_dir`` meanwhile is kept and this one refused.

    Raises:
        OutputError: a file could not be written (named), or (without ``overwrite``) ``out_dir`` holds
            another result by now; ``out_dir`` is then as it was.
    """
    import pyarrow.parquet as pq

    out = Path(out_dir)
    written = {"hoi_detections": str(out / "hoi_detections.jsonl")}
    clips = result.clips
    try:
        with staged(out, overwrite) as stage:
            with open(stage.file("hoi_detections.jsonl"), "w") as f:
                f.writelines(json.dumps(h) + "\n" for h in result.hois)
                for clip in clips.values():
                    _write_jsonl(f, clip.hois)
            schema = pa.schema([*HOI_SCHEMA, *VIDEO_COLUMNS]) if clips else HOI_SCHEMA
            table = pa.concat_tables([pa.Table.from_pylist(result.hois, schema=schema),
                                      *(c.hois.select(schema.names).cast(schema) for c in clips.values())])
            table = table.replace_schema_metadata({b"notes": json.dumps(result.notes).encode()})
            pq.write_table(table, stage.file("hoi_detections.parquet"))
            with open(stage.file("detections.jsonl"), "w") as f:
                f.writelines(json.dumps(d) + "\n" for d in result.detections)
                for clip in clips.values():
                    _write_jsonl(f, clip.detections)
            for folder, pngs in (("pictures", result.pictures), ("attention", result.attention)):
                for name, data in pngs.items():
                    stage.file(f"{folder}/{name}.png").write_bytes(data)
                if pngs:
                    written[folder] = str(out / folder)
            if clips:
                with open(stage.file("frames.jsonl"), "w") as f:
                    f.writelines(json.dumps({"image": name, **frame}) + "\n"
                                 for name, clip in clips.items() for frame in clip.frames)
                written["frames"] = str(out / "frames.jsonl")
            for name, clip in clips.items():
                if clip.video is not None:
                    shutil.move(clip.video, stage.file(f"videos/{name}.mp4"))
                if clip.sheet is not None:
                    clip.sheet.save(stage.file(f"videos/{name}.png"))
                if clip.video is not None or clip.sheet is not None:
                    written["videos"] = str(out / "videos")
            report = {"notes": result.notes, "images": result.images, "rejects": result.rejects, "info": result.info}
            stage.file("summary.json").write_text(mask(json.dumps(report, indent=2)) + "\n")  # no URI credentials
    finally:
        if result.scratch is not None:
            shutil.rmtree(result.scratch, ignore_errors=True)
    written["summary"] = str(out / "summary.json")
    return written


def _write_jsonl(f, table: pa.Table) -> None:
    """``table``'s rows as JSON lines, a batch at a time (a long clip has hundreds of thousands)."""
    for batch in table.to_batches(max_chunksize=8192):
        f.writelines(json.dumps(row) + "\n" for row in batch.to_pylist())


def _clip_tables(clip, classes, name: str, uri: str):
    """``clip`` with its hois and detections as the output's rows: the video's name and uri on each, the
    class names, rounded boxes (as the rows of images)."""
    from pipeline.classes.coco import coco80_names

    h, d = clip.hois, clip.detections
    info = [classes[i] for i in range(len(classes))]
    of_class = lambda field: pc.take(pa.array([getattr(c, field) for c in info], pa.string()), h["hoi"])  # noqa: E731
    hois = pa.table({
        "image": pa.array([name] * h.num_rows, pa.string()), "uri": pa.array([uri] * h.num_rows, pa.string()),
        "human_box": _rounded(h["human_box"]), "object_box": _rounded(h["object_box"]), "hoi": h["hoi"],
        "name": of_class("name"), "verb": of_class("verb"), "object": of_class("object"), "score": h["score"],
        "frame": h["frame"], "time_s": h["time_s"], "track": h["track"], "smoothed": h["smoothed"]})
    coco = pa.array([c.replace("_", " ") for c in coco80_names()], pa.string())
    detections = pa.table({"image": pa.array([name] * d.num_rows, pa.string()), "frame": d["frame"],
                           "time_s": d["time_s"], "box": _rounded(d["box"]), "category": pc.take(coco, d["label"]),
                           "label": d["label"], "score": pc.round(d["score"].cast(pa.float64()), 4)})
    return dataclasses.replace(clip, hois=hois, detections=detections)


def _rounded(boxes: pa.ChunkedArray) -> pa.Array:
    """Fixed-size list boxes rounded to 2 decimals (as float64: exact in JSON)."""
    flat = pc.round(pc.list_flatten(boxes).cast(pa.float64()), 2)
    return pa.FixedSizeListArray.from_arrays(flat.combine_chunks() if isinstance(flat, pa.ChunkedArray) else flat, 4)


HOI_SCHEMA = pa.schema([("image", pa.string()), ("uri", pa.string()), ("human_box", pa.list_(pa.float32(), 4)),
                        ("object_box", pa.list_(pa.float32(), 4)), ("hoi", pa.int32()), ("name", pa.string()),
                        ("verb", pa.string()), ("object", pa.string()), ("score", pa.float32())])
# The columns of a video frame's rows (null on the rows of images).
VIDEO_COLUMNS = [("frame", pa.int32()), ("time_s", pa.float64()), ("track", pa.int32()), ("smoothed", pa.float32())]

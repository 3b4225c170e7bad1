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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import storage
from pipeline.detection.boxes import ImageDetections, box_item
from pipeline.regions.pairs import PairParams
from pipeline.regions.scorer import ScoreParams
from pipeline.storage.credentials import mask

from pipeline.inference.detector_predictor import DetectorSpec
from pipeline.placement import Placement
from pipeline.inference.engine import shippable
from pipeline.cli.inputs import ImageInputs
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
    attention: bool = False            # the CLS attention map of each image's top pair


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


def model_notes(config, detector: DetectorSpec | None) -> list[str]:
    notes = [DEMO_NOTE] if config.metadata.get("demo_only") else []
    return notes + ([RANDOM_DETECTOR_NOTE] if detector is not None and detector.checkpoint == "random" else [])


def boxes_rows(inputs: ImageInputs, path: str, fmt: str, label_space: str) -> tuple[pa.Table, list[dict]]:
    """Rows of the images found in a boxes file (with raw boxes, labels, scores), and rejects of the others.

    Raises:
        ValueError: a score outside [0, 1] or a label outside the label space (the file is then suspect).
    """
    from pipeline.detection.precomputed import read_precomputed, sniff_format

    fmt = fmt if fmt != "auto" else sniff_format(path)
    dets, rejects, _ = read_precomputed(fmt, path, inputs.table.select(["image_id", "file_name"]), label_space)
    files = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["file_name"].to_pylist()))
    for k, d in enumerate(dets):
        s = np.asarray(d.scores, np.float64)
        finite = np.isfinite(s)
        if not (s[finite] >= 0).all() or not (s[finite] <= 1).all():
            raise ValueError(f"boxes {path}: image {files[d.image_id]} has scores {s.tolist()[:5]}; expected [0, 1]")
        if not finite.all():  # one unusable box, not a suspect file: the image keeps its other boxes
            rejects += [(path, box_item(files[d.image_id], d.boxes[j]), f"score {s[j]} is not a number in [0, 1]")
                        for j in np.flatnonzero(~finite)]
            dets[k] = ImageDetections(d.image_id, np.asarray(d.boxes)[finite], np.asarray(d.labels)[finite], s[finite])
    by_id = {d.image_id: d for d in dets}
    # An image the file has no boxes for may not exist at all: say that, not "no entry in the boxes file".
    gone = {files[i]: u for i, u in zip(inputs.table["image_id"].to_pylist(), inputs.table["uri"].to_pylist())
            if i not in by_id and not storage.exists(u)}
    rejects = [r for r in rejects if r[1] not in gone] + [(u, u, "missing image file") for u in gone.values()]
    keep = [i for i in inputs.table["image_id"].to_pylist() if i in by_id]
    rows = inputs.table.take(pa.array(keep, pa.int64())) if keep else inputs.table.slice(0, 0)
    rows = (rows.append_column("boxes", pa.array([np.asarray(by_id[i].boxes, np.float32).reshape(-1) for i in keep],
                                                 pa.list_(pa.float32())))
                .append_column("labels", pa.array([np.asarray(by_id[i].labels) for i in keep], pa.list_(pa.int16())))
                .append_column("scores", pa.array([np.asarray(by_id[i].scores, np.float32) for i in keep],
                                                  pa.list_(pa.float32()))))
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
    if boxes is not None:
        rows, file_rejects = boxes_rows(inputs, boxes, boxes_format, label_space)
        rejects += file_rejects
    else:
        rows = inputs.table
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
    reasons = {}
    for rej in rejects:
        reasons.setdefault(rej["image"], rej["reason"])
    for i in inputs.table["image_id"].to_pylist():
        images.append(done.get(i) or {"image": names[i], "file_name": files[i], "uri": uris[i], "status": "rejected",
                                      "note": reasons.get(uris[i]) or reasons.get(names[i]) or
                                      reasons.get(files[i], "not processed")})
    info = {**run.info, "model": config.model_name, "classes": len(classes), "checkpoint": str(checkpoint),
            "boxes_from": boxes or (detector.source if detector else "")}
    return HOIResult(hois, detections, images, rejects, pictures, attention, notes, info)


def _round(box) -> list[float]:
    return [round(float(v), 2) for v in np.asarray(box).reshape(-1)]


def write_hoi_results(result: HOIResult, out_dir: str | Path) -> dict[str, str]:
    """Writes the result into ``out_dir`` all at once (:func:`~pipeline.cli.result_folder.staged`:
    a temporary folder beside it, renamed into place at the end). Returns what was written.

    Files: ``hoi_detections.jsonl`` and ``.parquet`` (image, uri, human_box, object_box, hoi, name, verb,
    object, score), ``detections.jsonl`` (the boxes used), ``summary.json`` (notes, per-image status,
    rejects, run info), ``pictures/<image>.png`` and ``attention/<image>.png``.

    Raises:
        OutputError: a file could not be written (named); ``out_dir`` is then as it was.
    """
    import pyarrow.parquet as pq

    out = Path(out_dir)
    written = {"hoi_detections": str(out / "hoi_detections.jsonl")}
    with staged(out) as stage:
        stage.file("hoi_detections.jsonl").write_text("".join(json.dumps(h) + "\n" for h in result.hois))
        table = pa.Table.from_pylist(result.hois, schema=HOI_SCHEMA)
        table = table.replace_schema_metadata({b"notes": json.dumps(result.notes).encode()})
        pq.write_table(table, stage.file("hoi_detections.parquet"))
        stage.file("detections.jsonl").write_text("".join(json.dumps(d) + "\n" for d in result.detections))
        for folder, pngs in (("pictures", result.pictures), ("attention", result.attention)):
            for name, data in pngs.items():
                stage.file(f"{folder}/{name}.png").write_bytes(data)
            if pngs:
                written[folder] = str(out / folder)
        report = {"notes": result.notes, "images": result.images, "rejects": result.rejects, "info": result.info}
        stage.file("summary.json").write_text(mask(json.dumps(report, indent=2)) + "\n")  # no URI credentials
    written["summary"] = str(out / "summary.json")
    return written


HOI_SCHEMA = pa.schema([("image", pa.string()), ("uri", pa.string()), ("human_box", pa.list_(pa.float32(), 4)),
                        ("object_box", pa.list_(pa.float32(), 4)), ("hoi", pa.int32()), ("name", pa.string()),
                        ("verb", pa.string()), ("object", pa.string()), ("score", pa.float32())])

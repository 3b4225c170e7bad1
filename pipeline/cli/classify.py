"""``defr classify``: the top-k classes of the model for each image, as JSON and a contact sheet.

Image-level scores come from the same predictor as the predict stage
(:class:`pipeline.inference.image_predictor.ImageScorer`); classes are named by the checkpoint's own label
space. ``score`` is sigmoid(logit): the model's per-class belief that the class is present (the
LSE-Sign loss trains the sign of each logit), not a probability calibrated on any dataset.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.datasets.images import ImageError, read_rgb
from pipeline.storage.credentials import mask

from pipeline.placement import Placement
from pipeline.cli.hoi import DEMO_NOTE
from pipeline.inference.image_predictor import score_images
from pipeline.cli.inputs import ImageInputs
from pipeline.inference.pictures import contact_sheet, png_bytes
from pipeline.cli.result_folder import staged

SHEET_MAX = 48  # images on the contact sheet (the JSON has them all)


@dataclass
class ClassifyResult:
    images: list[dict]     # image, uri, top: [{class, name, verb, object, logit, score}]
    rejects: list[dict]
    sheet: bytes | None
    notes: list[str]
    info: dict


def classify_images(inputs: ImageInputs, checkpoint: str, top_k: int, placement: Placement, *, ray: bool,
                    sheet: bool = True) -> ClassifyResult:
    """The ``top_k`` classes (highest logits) of each readable image of ``inputs``."""
    from pipeline.classes.space import model_classes

    from pipeline.model import read_model_config

    config = read_model_config(checkpoint)
    classes = model_classes(config)
    run = score_images(inputs.table.select(["image_id", "uri"]), checkpoint, placement, ray=ray, upright=True)
    names = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["name"].to_pylist()))
    uris = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["uri"].to_pylist()))
    files = dict(zip(inputs.table["image_id"].to_pylist(), inputs.table["file_name"].to_pylist()))
    images = []
    for image_id, logits in zip(run.table["image_id"].to_pylist(), run.table["scores"].to_pylist()):
        logits = np.asarray(logits, np.float64)
        best = np.argsort(-logits, kind="stable")[:top_k]
        top = [{"class": int(c), "name": classes[c].name, "verb": classes[c].verb, "object": classes[c].object,
                "logit": round(float(logits[c]), 4), "score": round(float(1 / (1 + np.exp(-logits[c]))), 4)}
               for c in best]
        images.append({"image": names[image_id], "file_name": files[image_id], "uri": uris[image_id], "top": top})
    rejects = [{"image": a, "reason": why} for a, why in inputs.problems]
    rejects += [{"image": uri, "reason": reason} for uri, _, reason in run.rejects]
    notes = [DEMO_NOTE] if config.metadata.get("demo_only") else []
    picture = None
    if sheet and images:
        items = []
        for im in images[:SHEET_MAX]:
            try:
                items.append((read_rgb(im["uri"], upright=True), im["file_name"],
                              [(t["name"], t["score"]) for t in im["top"]]))
            except ImageError:  # changed since it was scored: leave it off the sheet
                continue
        picture = png_bytes(contact_sheet(items, note=" | ".join(notes)))
    info = {**run.info, "model": config.model_name, "classes": len(classes), "checkpoint": str(checkpoint)}
    return ClassifyResult(images, rejects, picture, notes, info)


def write_classify_results(result: ClassifyResult, out_dir: str | Path, overwrite: bool = False) -> dict[str, str]:
    """Writes ``classes.json`` (notes, per-image top classes, rejects, info) and ``contact_sheet.png`` into
    ``out_dir`` all at once (:func:`~pipeline.cli.result_folder.staged`; ``overwrite`` as for
    :func:`pipeline.cli.hoi.write_hoi_results`).

    Raises:
        OutputError: a file could not be written (named), or (without ``overwrite``) ``out_dir`` holds
            another result by now; ``out_dir`` is then as it was.
    """
    out = Path(out_dir)
    written = {"classes": str(out / "classes.json")}
    with staged(out, overwrite) as stage:
        if result.sheet is not None:
            stage.file("contact_sheet.png").write_bytes(result.sheet)
            written["contact_sheet"] = str(out / "contact_sheet.png")
        report = {"notes": result.notes, "images": result.images, "rejects": result.rejects, "info": result.info}
        stage.file("classes.json").write_text(mask(json.dumps(report, indent=2)) + "\n")  # no URI credentials
    return written

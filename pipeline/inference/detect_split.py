"""The detect stage's work: boxes of one split from the chosen source, checked, as tables to write.

Sources (``backend``): ``mmdet`` (a detector on the inference engine's pool), ``precomputed`` (files made
elsewhere: :mod:`pipeline.detection.precomputed`), ``oracle`` (DEMO ONLY, perturbed ground truth).
Every source goes through the same post-processing (:func:`pipeline.detection.boxes.finish`): boxes are
clipped to the image; unusable boxes (non-finite, degenerate, likely x, y, w, h, outside the image) are
dropped and become reject rows; boxes under the score floor and beyond the per-image cap are filtered
(counted in the metadata, not rejects: the params ask for them). Unreadable images and missing or
malformed detection files are reject rows too. Each input then goes through
:func:`pipeline.rejects.check_loss`: losing more than the allowed fraction of the images (or table rows)
or of the boxes fails, naming the count and the top reasons, before anything is written.
"""
from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import storage
from pipeline.classes.space import ClassSpace
from pipeline.detection import oracle
from pipeline.detection.boxes import Counts, ImageDetections, finish, rejects_table, to_table
from pipeline.datasets.splits import read_split
from pipeline.inference.engine import SplitResult
from pipeline.rejects import check_loss

if TYPE_CHECKING:
    from pipeline.inference.detector_predictor import DetectorSpec

log = logging.getLogger(__name__)
from pipeline.choices import DETECT_BACKENDS as BACKENDS


@dataclass
class PrecomputedSpec:
    """Detections made elsewhere: ``format`` (hico_json | table | boxes_json), ``path``, ``label_space``."""
    format: str
    path: str
    label_space: str = "hico80"


@dataclass
class DetectOptions:
    """What the detect stage's params ask for (``backend`` picks which of the three specs is used).

    Attributes:
        mmdet: the detector (``checkpoint`` ``random`` = random weights, tests and demos only).
    """
    backend: str
    score_floor: float = 0.05
    max_per_image: int = 100
    mmdet: "DetectorSpec | None" = None
    precomputed: PrecomputedSpec | None = None
    oracle: oracle.OracleConfig | None = None


def detect_split(images_path: str, pairs_path: str, split: str, options: DetectOptions, placement,
                 max_reject_fraction: float, rejects_path: str = "") -> SplitResult:
    """Boxes of every image of ``split`` from ``options.backend``.

    Args:
        images_path, pairs_path: the prepare stage's tables (pairs: ground truth, read by the oracle only).
        placement: :class:`pipeline.inference.engine.Placement` of the mmdet pool.
        max_reject_fraction: ``checks.max_reject_fraction``.
        rejects_path: where the stage writes the rejects (named in the messages).

    Raises:
        ValueError: unknown backend, bad backend settings (before any work), or an empty split.
        pipeline.rejects.DataLossError: too many images, rows or boxes rejected.
    """
    if options.backend not in BACKENDS:
        raise ValueError(f"params.yaml detect.backend must be one of {BACKENDS}, got {options.backend!r}")
    images = read_split(images_path, split, "detect.split")
    log.info("backend %s on %d %s images", options.backend, images.num_rows, split)
    if options.backend == "oracle":
        found = _oracle(images, pairs_path, options)
    elif options.backend == "precomputed":
        found = _precomputed(images, options)
    else:
        found = _mmdet(images, options, placement)
    if isinstance(found, str):  # not applicable
        meta = {"backend": options.backend, "split": split, "images": images.num_rows, "not_applicable": found}
        log.warning("detect: not applicable: %s; writing an empty detections table", found)
        return SplitResult(to_table([]), rejects_table([]), meta, [f"not applicable: {found}"])
    dets, (what, total, input_rejects), counts, extra = found
    summary = [check_loss(what, total, [r[2] for r in input_rejects], max_reject_fraction, rejects_path),
               check_loss(f"boxes from the {options.backend} backend", counts.boxes,
                          [r[2] for r in counts.rejects], max_reject_fraction, rejects_path)]
    table = to_table(dets)
    meta = {"backend": options.backend, "split": split, "score_floor": float(options.score_floor),
            "max_per_image": int(options.max_per_image), "images": images.num_rows, "images_used": len(dets),
            "images_rejected": images.num_rows - len(dets), "detections": table.num_rows,
            **{f"{options.backend}.{k}": v for k, v in {**counts.as_dict(), **extra}.items()}}
    if options.backend == "oracle":
        meta["oracle"] = "demo only"
    rejects = rejects_table([*input_rejects, *counts.rejects])
    return SplitResult(table, rejects, meta, [s for s in summary if s])


def _finish_all(dets: list[ImageDetections], images: pa.Table, options: DetectOptions, source: str) -> tuple[list, Counts]:
    size = {i: (w, h, n) for i, w, h, n in zip(*(images[c].to_pylist() for c in ("image_id", "width", "height",
                                                                              "file_name")))}
    counts = Counts()
    out = [finish(d, size[d.image_id][0], size[d.image_id][1], options.score_floor, options.max_per_image,
                  counts, source=source, image=size[d.image_id][2]) for d in dets]
    return out, counts


def _oracle(images, pairs_path: str, options: DetectOptions):
    cfg = options.oracle or oracle.OracleConfig()
    pairs = storage.read_parquet(pairs_path)
    pairs = pairs.filter(pc.is_in(pairs["image_id"], images["image_id"]))
    if pairs.num_rows == 0:
        return ("the oracle (DEMO ONLY) perturbs ground-truth boxes and this split has no ground-truth "
                "human-object pairs (an image-level dataset): there are no boxes to detect")
    # The pairs' class ids name objects through the dataset's own classes table (beside pairs.parquet).
    classes_path = storage.join(posixpath.dirname(pairs_path) or ".", "classes.parquet")
    coco = ClassSpace.from_table(storage.read_parquet(classes_path), classes_path).coco80
    dets, counts = _finish_all(oracle.oracle_detections(images, pairs, cfg, coco), images, options, "oracle")
    extra = {"oracle": oracle.LABEL, "seed": cfg.seed, "jitter": cfg.jitter, "drop_rate": cfg.drop_rate,
             "false_positives": cfg.false_positives}
    return dets, ("images", images.num_rows, []), counts, extra


def _precomputed(images, options: DetectOptions):
    from pipeline.detection.precomputed import read_precomputed

    q = options.precomputed
    if q is None or not q.path:
        raise ValueError("params.yaml detect.precomputed.path names no file: give the directory of per-image "
                         "JSON files, the boxes JSON or the detections table (detect.backend: precomputed)")
    dets, rejects, extra = read_precomputed(q.format, q.path, images, q.label_space)
    dets, counts = _finish_all(dets, images, options, q.path)
    if q.format == "table":  # its rejects are rows naming no image of the split
        loss = (f"rows of {q.path}", int(extra["rows"]), rejects)
    else:                    # its rejects are images without a usable detection file / entry
        loss = (f"images' detections in {q.path}", images.num_rows, rejects)
    return dets, loss, counts, {"path": q.path, "format": q.format, "label_space": q.label_space, **extra}


def _mmdet(images, options: DetectOptions, placement):
    from pipeline.inference.detector_predictor import detect_images

    spec = options.mmdet
    check_mmdet(spec)
    # Build the detector once here: a bad config, checkpoint or class set fails now with its message,
    # not as an actor-construction error inside the Ray pool.
    probe = spec.build("cpu")
    config, classes_source = str(probe.config_path), probe.classes_source
    del probe
    dets, counts, run = detect_images(images, spec, placement, ray=True)
    extra = {"config": config, "checkpoint": spec.checkpoint, "test_scale": spec.test_scale,
             "classes_from": classes_source, "actors": run.info["actors"], "device": run.info["device"]}
    if spec.checkpoint == "random":
        extra["weights"] = "random: tests and demos only, not a trained detector"
    return dets, ("images", images.num_rows, run.rejects), counts, extra


def check_mmdet(spec) -> None:
    """Fails fast, naming the params, when the MMDetection stack or the checkpoint is missing."""
    try:
        import mmdet.apis  # noqa: F401
    except ImportError as e:
        raise ImportError("params.yaml detect.backend: mmdet needs the MMDetection stack: run `make "
                          "install-detect` (or `bash scripts/install_mmdet.sh .venv/bin/python`; docs/detection.md): "
                          f"{e}") from e
    if spec is None or not spec.checkpoint:
        raise ValueError("params.yaml detect.mmdet: give a checkpoint (path or URI) or random_weights: true "
                         "(tests and demos only)")
    if spec.checkpoint != "random" and not storage.exists(spec.checkpoint):
        raise FileNotFoundError(f"params.yaml detect.mmdet.checkpoint: {spec.checkpoint} does not exist")

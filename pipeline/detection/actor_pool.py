"""Running an MMDetection detector over many images on a Ray Data actor pool.

Each actor loads the detector once and then streams batches of images (decoded inside the actor, so
JPEG decoding scales with the pool). With GPUs in the cluster there is one actor per GPU
(``num_gpus=1``); without, ``actors`` CPU actors of ``cpus_per_actor`` CPUs each (torch threads set to
match, so actors do not oversubscribe the cores). Undecodable images become reject rows; the run goes on.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.images import ImageError, read_rgb
from pipeline.distributed import map_with_actor_pool
from pipeline.detection.boxes import Counts, ImageDetections, finish

log = logging.getLogger(__name__)
COUNT_FIELDS = ("clipped", "degenerate", "below_floor", "over_cap", "unmapped")


@dataclass
class DetectorSpec:
    """Everything an actor needs to build its detector and post-process (plain data: it is shipped)."""
    config: str
    checkpoint: str
    test_scale: list[int] | None = None
    trusted_checkpoint: bool = False
    allow_unmapped_classes: bool = False
    seed: int = 0
    score_floor: float = 0.05
    max_per_image: int = 100


def decode(uri: str, width: int, height: int) -> tuple[np.ndarray | None, str | None]:
    """RGB uint8 array of the image, or (None, reason) when it cannot be used."""
    try:
        return np.asarray(read_rgb(uri, (width, height))), None
    except ImageError as e:  # a wrong size would put the boxes outside the annotated pixel frame
        return None, str(e)


class DetectActor:
    """Ray Data callable class: a pyarrow batch of images -> one row of detections per image."""

    def __init__(self, spec: dict, device: str, threads: int):
        import torch

        from pipeline.detection.mmdet_backend import MMDetDetector

        torch.set_num_threads(max(1, threads))
        self.spec = DetectorSpec(**spec)
        self.detector = MMDetDetector(self.spec.config, self.spec.checkpoint, device=device,
                                      test_scale=self.spec.test_scale,
                                      trusted_checkpoint=self.spec.trusted_checkpoint,
                                      allow_unmapped_classes=self.spec.allow_unmapped_classes,
                                      seed=self.spec.seed)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        decoded = [decode(r["uri"], r["width"], r["height"]) for r in rows]
        good = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
        preds = dict(zip(good, self.detector.predict([decoded[i][0] for i in good])))
        out = {k: [] for k in ("image_id", "boxes", "labels", "scores", "problem", *COUNT_FIELDS)}
        for i, r in enumerate(rows):
            counts = Counts()
            boxes, labels, scores, unmapped = preds.get(i, (np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0))
            det = finish(ImageDetections(r["image_id"], boxes, labels, scores), r["width"], r["height"],
                         self.spec.score_floor, self.spec.max_per_image, counts)
            out["image_id"].append(r["image_id"])
            out["boxes"].append(det.boxes.reshape(-1).tolist())
            out["labels"].append(det.labels.tolist())
            out["scores"].append(det.scores.tolist())
            out["problem"].append(decoded[i][1])
            for name, value in zip(COUNT_FIELDS, (counts.clipped, counts.degenerate, counts.below_floor,
                                                  counts.over_cap, unmapped)):
                out[name].append(value)
        return pa.table({
            "image_id": pa.array(out["image_id"], pa.int64()),
            "boxes": pa.array(out["boxes"], pa.list_(pa.float32())),
            "labels": pa.array(out["labels"], pa.list_(pa.int16())),
            "scores": pa.array(out["scores"], pa.list_(pa.float32())),
            "problem": pa.array(out["problem"], pa.string()),
            **{k: pa.array(out[k], pa.int64()) for k in COUNT_FIELDS},
        })


def detection_dataset(images: pa.Table, spec: DetectorSpec, actors: int = 1, cpus_per_actor: int = 1,
                      batch_size: int = 8, device: str = "auto"):
    """The lazy Ray Dataset of per-image detection rows (see :func:`detect_images`); Ray must be up.

    Returns:
        (dataset, number of actors, whether they use GPUs).
    """
    return map_with_actor_pool(images.select(["image_id", "uri", "width", "height"]), DetectActor,
                               {"spec": asdict(spec)}, actors=actors, cpus_per_actor=cpus_per_actor,
                               batch_size=batch_size, device=device, param="detect.mmdet.device")


def detect_images(images: pa.Table, spec: DetectorSpec, actors: int = 1, cpus_per_actor: int = 1,
                  batch_size: int = 8, device: str = "auto"
                  ) -> tuple[list[ImageDetections], list[tuple[str, str, str]], dict]:
    """Runs the detector over ``images`` (image_id, uri, width, height) with Ray Data.

    Ray must be initialized (:func:`pipeline.distributed.init_ray`).

    Args:
        actors: CPU actors when no GPU is used (ignored with GPUs: one actor per GPU).
        cpus_per_actor: CPUs (and torch threads) per CPU actor.
        device: ``auto`` (GPUs when the cluster has any), ``cpu`` or ``cuda``.

    Returns:
        (detections of the usable images sorted by image_id, reject rows, metadata counts).
    """
    import ray

    ds, size, use_gpu = detection_dataset(images, spec, actors, cpus_per_actor, batch_size, device)
    log.info("detecting %d images with %d %s actor(s)", images.num_rows, size, "GPU" if use_gpu else "CPU")
    result = pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by("image_id")
    names = dict(zip(images["image_id"].to_pylist(), images["uri"].to_pylist()))
    dets, rejects = [], []
    for r in result.to_pylist():
        if r["problem"]:
            rejects.append((names[r["image_id"]], str(r["image_id"]), r["problem"]))
            continue
        dets.append(ImageDetections(r["image_id"], np.asarray(r["boxes"], np.float32).reshape(-1, 4),
                                    np.asarray(r["labels"], np.int64), np.asarray(r["scores"], np.float32)))
    counts = {k: int(pc.sum(result[k]).as_py() or 0) for k in COUNT_FIELDS}
    counts["actors"], counts["device"] = size, "cuda" if use_gpu else "cpu"
    return dets, rejects, counts
